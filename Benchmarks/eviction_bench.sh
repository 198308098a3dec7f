#!/usr/bin/env bash
# Eviction at the memory limit, Damselfly vs redis-server (issue 15): hit ratio, throughput
# and server CPU per request of a cache under a Zipf workload, with the same maxmemory and
# policy for both.
#
#   Benchmarks/eviction_bench.sh
#
# Per policy (POLICIES, default "allkeys-lru allkeys-lfu") and server, a fresh server with
# CONFIG SET maxmemory $MAXMEMORY and maxmemory-policy, then a cache-aside driver (Python,
# one connection, pipelined batches of $BATCH): GET a key drawn from a Zipf distribution
# (exponent $ZIPF_S over $KEYS keys, ranks shuffled over the key names with a fixed seed,
# so both servers see the same sequence); on a miss, SET it ($VALUE-byte value). $WARMUP
# operations fill the cache and are not counted; the next $OPS are measured:
#   hit ratio   GET hits / GETs
#   ops/s       GETs and SETs per second as the driver saw them (one Python client: a
#               floor set by the driver as much as by the server, equal for both)
#   CPU µs/req  the server's utime + stime over the measured phase / (GETs + SETs)
#   keys        DBSIZE at the end (the same limit holds a different number of keys: each
#               server counts its own memory), evicted_keys from INFO
#
# Env: DAMSELFLY_BIN (default: build it), THREADS=2 (--proactor_threads), MAXMEMORY=8mb,
#      KEYS=200000, VALUE=100, ZIPF_S=0.99, WARMUP=300000, OPS=600000, BATCH=200.
# Prints a markdown table and writes it to Benchmarks/results/eviction-t$THREADS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

THREADS="${THREADS:-2}"
MAXMEMORY="${MAXMEMORY:-8mb}"
KEYS="${KEYS:-200000}"
VALUE="${VALUE:-100}"
ZIPF_S="${ZIPF_S:-0.99}"
WARMUP="${WARMUP:-300000}"
OPS="${OPS:-600000}"
BATCH="${BATCH:-200}"
POLICIES="${POLICIES:-allkeys-lru allkeys-lfu}"

need_tools redis-server redis-cli python3
resolve_damselfly_bin
make_workdir

# drive PORT PID: the workload; prints "hit_ratio ops_per_s cpu_us_per_req keys evicted".
drive() {
  python3 - "$1" "$2" "$KEYS" "$VALUE" "$ZIPF_S" "$WARMUP" "$OPS" "$BATCH" "$(getconf CLK_TCK)" <<'EOF'
import bisect, itertools, random, socket, sys, time
port, pid, nkeys, vsize, s, warmup, ops, batch, tick = sys.argv[1:]
port, pid, nkeys, vsize, warmup, ops, batch, tick = map(int, (port, pid, nkeys, vsize, warmup, ops, batch, tick))
s = float(s)
rnd = random.Random(12345)
cum = list(itertools.accumulate(1.0 / (r ** s) for r in range(1, nkeys + 1)))
names = [b"key:%d" % i for i in range(nkeys)]
rnd.shuffle(names)
value = b"v" * vsize
sock = socket.create_connection(("127.0.0.1", port))
buf = bytearray()

def fill():
    chunk = sock.recv(1 << 20)
    if not chunk:
        raise SystemExit("server closed the connection")
    buf.extend(chunk)

def line():
    while True:
        i = buf.find(b"\r\n")
        if i >= 0:
            out = bytes(buf[:i]); del buf[:i + 2]; return out
        fill()

def reply():
    head = line()
    if head[:1] == b"$":
        n = int(head[1:])
        if n < 0:
            return None
        while len(buf) < n + 2:
            fill()
        out = bytes(buf[:n]); del buf[:n + 2]; return out
    if head[:1] == b"-":
        raise SystemExit("server error: " + head.decode())
    return head

def cmd(*parts):
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)

def cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

def run(n):
    gets = hits = sets = 0
    total = max(cum[-1], 1e-300)
    while gets < n:
        k = min(batch, n - gets)
        keys = [names[bisect.bisect_left(cum, rnd.random() * total)] for _ in range(k)]
        sock.sendall(b"".join(cmd(b"GET", key) for key in keys))
        missed = [key for key in keys if reply() is None]
        gets += k
        hits += k - len(missed)
        if missed:
            sock.sendall(b"".join(cmd(b"SET", key, value) for key in missed))
            for _ in missed:
                reply()
            sets += len(missed)
    return gets, hits, sets

run(warmup)
c0, t0 = cpu(), time.perf_counter()
gets, hits, sets = run(ops)
t1, c1 = time.perf_counter(), cpu()
sock.sendall(cmd(b"DBSIZE") + cmd(b"INFO", b"stats"))
keys = int(reply()[1:])
info = reply().decode()
evicted = next((l.split(":")[1].strip() for l in info.splitlines() if l.startswith("evicted_keys:")), "?")
reqs = gets + sets
print(f"{hits / gets:.4f} {reqs / (t1 - t0):.0f} {(c1 - c0) / tick / reqs * 1e6:.2f} {keys} {evicted}")
EOF
}

run() {  # kind policy -> the drive line
  local port log pid
  log="$WORKDIR/$1-$2.log"
  start_either "$1" "$log" --proactor_threads="$THREADS"
  port=$PORT
  pid=$SERVER_PID
  redis-cli -p "$port" config set maxmemory "$MAXMEMORY" >/dev/null
  redis-cli -p "$port" config set maxmemory-policy "$2" >/dev/null
  drive "$port" "$pid"
  stop_server "$pid"
}

mkdir -p Benchmarks/results
out=Benchmarks/results/eviction-t$THREADS.md
{
  echo "Cache-aside GET/SET under Zipf($ZIPF_S) over $KEYS keys, $VALUE-byte values, maxmemory $MAXMEMORY;"
  echo "$WARMUP warm-up + $OPS measured GETs, one pipelined client (batches of $BATCH); Damselfly --proactor_threads=$THREADS."
  echo
  echo "| policy | server | hit ratio | ops/s | CPU µs/req | keys held | evicted |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for policy in $POLICIES; do
    for kind in redis damselfly; do
      read -r hit ops cpu keys evicted < <(run "$kind" "$policy")
      echo "| $policy | $kind | $hit | $ops | $cpu | $keys | $evicted |"
    done
  done
} | tee "$out"
echo "wrote $out"

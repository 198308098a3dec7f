#!/usr/bin/env bash
# Replication (docs/benchmarks.md, "Replica full sync and replication lag").
#
# 1. Full-sync time: a master holding KEYS string keys (DEBUG POPULATE KEYS key 16), then
#    REPLICAOF from a fresh replica, timed from REPLICAOF until the replica reports
#    master_link_status:up with the master's DBSIZE, and the replica's RSS then (VmRSS) and
#    at its peak (VmHWM). Pairs master -> replica: redis -> redis, redis -> damselfly,
#    damselfly -> redis, damselfly -> damselfly. Masters sync diskless, with no delay.
# 2. Lag under load: the same four pairs, empty, linked; redis-benchmark runs SET and LPUSH
#    against the master (LAG_CLIENTS clients, LAG_REQUESTS requests each test) while a sampler
#    reads every 100 ms the master's master_repl_offset and the replica's own
#    slave_repl_offset (what it applied; the offset it acknowledges lags by up to its 1 s ACK
#    period on both servers) and reports the difference in bytes (median, max); and a probe
#    writes a fresh key on the master every 100 ms and polls the replica until it appears:
#    the lag in milliseconds (median, max), no WAIT involved.
#
#   Benchmarks/replica_sync.sh   # Env: KEYS [1000000], FLAGS [--proactor_threads=2], ROUNDS [1],
#                                #      PARTS ["sync lag"], LAG_CLIENTS [20], LAG_REQUESTS [200000],
#                                #      REPLICA_CONFIG ["" or e.g. "repl-diskless-load swapdb": CONFIG SET on
#                                #      each replica before REPLICAOF], PAIRS_ONLY ["" or e.g. "redis damselfly"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh
need_tools redis-server redis-cli redis-benchmark python3
resolve_damselfly_bin
KEYS="${KEYS:-1000000}"; FLAGS="${FLAGS:---proactor_threads=2}"; ROUNDS="${ROUNDS:-1}"
PARTS="${PARTS:-sync lag}"; LAG_CLIENTS="${LAG_CLIENTS:-20}"; LAG_REQUESTS="${LAG_REQUESTS:-200000}"
REPLICA_CONFIG="${REPLICA_CONFIG:-}"
make_workdir
PAIRS=("redis redis" "redis damselfly" "damselfly redis" "damselfly damselfly")
if [[ -n "${PAIRS_ONLY:-}" ]]; then PAIRS=("$PAIRS_ONLY"); fi

start_kind() {  # kind name -> PORT, SERVER_PID
  local kind=$1 name=$2
  PORT=$(free_port)
  if [[ $kind == redis ]]; then
    start_redis "$PORT" "$WORKDIR/$name.log" --repl-diskless-sync-delay 0 --enable-debug-command yes
  else
    start_damselfly "$PORT" "$WORKDIR/$name.log" $FLAGS
  fi
  wait_ping "$PORT" "$name" "$WORKDIR/$name.log"
}

link_up() {  # port
  [[ $(redis-cli -p "$1" INFO replication | tr -d '\r' | grep -c '^master_link_status:up') == 1 ]]
}

time_sync() {  # master-kind replica-kind
  local mk=$1 rk=$2 mport mpid rport rpid start expected
  start_kind "$mk" "master-$mk"; mport=$PORT; mpid=$SERVER_PID
  redis-cli -p "$mport" DEBUG POPULATE "$KEYS" key 16 >/dev/null
  expected=$(redis-cli -p "$mport" DBSIZE)
  start_kind "$rk" "replica-$rk"; rport=$PORT; rpid=$SERVER_PID
  # shellcheck disable=SC2086
  if [[ -n "$REPLICA_CONFIG" ]]; then redis-cli -p "$rport" CONFIG SET $REPLICA_CONFIG >/dev/null; fi
  start=$(date +%s.%N)
  redis-cli -p "$rport" REPLICAOF 127.0.0.1 "$mport" >/dev/null
  until link_up "$rport" && [[ $(redis-cli -p "$rport" DBSIZE) == "$expected" ]]; do sleep 0.05; done
  python3 -c "print(f'full sync $mk -> $rk: $expected keys in {$(date +%s.%N) - $start:.2f} s, replica RSS {$(rss_kb "$rpid") / 1024:.0f} MiB, peak {$(awk '/^VmHWM:/ { print $2 }' "/proc/$rpid/status") / 1024:.0f} MiB')"
  stop_server "$rpid"; stop_server "$mpid"
}

measure_lag() {  # master-kind replica-kind
  local mk=$1 rk=$2 mport mpid rport rpid
  start_kind "$mk" "lag-master-$mk"; mport=$PORT; mpid=$SERVER_PID
  start_kind "$rk" "lag-replica-$rk"; rport=$PORT; rpid=$SERVER_PID
  redis-cli -p "$rport" REPLICAOF 127.0.0.1 "$mport" >/dev/null
  until link_up "$rport"; do sleep 0.05; done
  python3 - "$mport" "$rport" "$mk -> $rk" "$LAG_CLIENTS" "$LAG_REQUESTS" <<'EOF'
import socket, statistics, subprocess, sys, threading, time

mport, rport, name, clients, requests = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
    def call(self, *args):
        out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x if isinstance(x, bytes) else str(x).encode() for x in args))
        self.s.sendall(out)
        return self.read()
    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        return rest

def field(conn, name):
    for line in conn.call("INFO", "replication").decode().splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1])
    return None

bench = subprocess.Popen(["redis-benchmark", "-p", str(mport), "-t", "set,lpush", "-c", clients, "-n", requests,
                          "-r", "100000", "-d", "16", "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
m, r = Conn(mport), Conn(rport)
lag_bytes, lag_ms = [], []
pm, pr = Conn(mport), Conn(rport)
stop = threading.Event()

def probe():
    n = 0
    while not stop.is_set():
        n += 1
        key = b"probe:%d" % n
        t0 = time.monotonic()
        pm.call("SET", key, 1)
        while pr.call("GET", key) is None:
            if time.monotonic() - t0 > 30:
                break
            time.sleep(0.0005)
        lag_ms.append((time.monotonic() - t0) * 1000)
        time.sleep(max(0, 0.1 - (time.monotonic() - t0)))

t = threading.Thread(target=probe, daemon=True)
t.start()
time.sleep(0.2)
while bench.poll() is None:
    master_offset = field(m, "master_repl_offset")
    replica_offset = field(r, "slave_repl_offset")
    lag_bytes.append(max(0, master_offset - replica_offset))
    time.sleep(0.1)
stop.set()
t.join(35)
rps = " / ".join(l.split(":")[1].strip().split(" requests")[0] for l in bench.stdout.read().decode().replace("\r", "\n").splitlines() if "requests per second" in l and ":" in l)
print(f"lag {name}: bytes median {statistics.median(lag_bytes):.0f} max {max(lag_bytes)} ({len(lag_bytes)} samples); "
      f"ms median {statistics.median(lag_ms):.1f} max {max(lag_ms):.1f} ({len(lag_ms)} probes); load SET / LPUSH {rps} rps")
EOF
  stop_server "$rpid"; stop_server "$mpid"
}

for _ in $(seq 1 "$ROUNDS"); do
  for part in $PARTS; do
    for pair in "${PAIRS[@]}"; do
      # shellcheck disable=SC2086
      if [[ $part == sync ]]; then time_sync $pair; else measure_lag $pair; fi
    done
  done
done

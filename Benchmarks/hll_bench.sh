#!/usr/bin/env bash
# HyperLogLog throughput and server CPU per call, Damselfly vs redis-server (issue 15).
#
#   Benchmarks/hll_bench.sh
#
# redis-benchmark workloads, each against a fresh server:
#   pfadd       PFADD hll <random element>: one key, dense after the first few thousand calls
#   pfcount-1   PFCOUNT of one 50,000-element key: the first call estimates and caches, the
#               rest read the cached cardinality from the header
#   pfcount-3   PFCOUNT of three dense keys: every call merges 3 × 16384 registers and
#               estimates (no cache); in Damselfly a multi-shard transaction when the keys
#               sit on different shards
#   pfmerge     PFMERGE dst of the same three keys
# Server CPU per call: utime + stime from /proc/PID/stat over the run, divided by the calls.
#
# Env: N=200000 calls for pfadd/pfcount-1 (N/10 for the three-key ones), CLIENTS=50,
#      THREADS=2 (Damselfly's --proactor_threads), DAMSELFLY_BIN (default: build it).
# Prints a markdown table and writes it to Benchmarks/results/hll-t$THREADS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

N="${N:-200000}"
CLIENTS="${CLIENTS:-50}"
THREADS="${THREADS:-2}"

need_tools redis-server redis-benchmark redis-cli python3
resolve_damselfly_bin
make_workdir

KEYS3=(hll:a hll:b hll:c)


fill() {  # port key count: PFADD count distinct elements, pipelined
  python3 - "$@" <<'EOF'
import socket, sys
port, key, count = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
def cmd(*parts):
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
s = socket.create_connection(("127.0.0.1", port))
for start in range(0, count, 10000):
    s.sendall(b"".join(cmd(b"PFADD", key, b"%s-%d" % (key, i)) for i in range(start, min(count, start + 10000))))
    got = b""
    while got.count(b"\r\n") < min(10000, count - start):
        got += s.recv(1 << 20)
EOF
}

run() {  # kind workload -> "req/s µs-per-call"
  local port log pid n args
  log="$WORKDIR/$1-$2.log"
  start_either "$1" "$log" --proactor_threads="$THREADS"
  port=$PORT
  pid=$SERVER_PID
  n=$N
  case "$2" in
    pfadd) args=(pfadd hll __rand_int__) ;;
    pfcount-1) fill "$port" hll 50000; args=(pfcount hll) ;;
    pfcount-3|pfmerge)
      for k in "${KEYS3[@]}"; do fill "$port" "$k" 50000; done
      n=$((N / 10))
      if [[ "$2" == pfcount-3 ]]; then args=(pfcount "${KEYS3[@]}"); else args=(pfmerge hll:dst "${KEYS3[@]}"); fi ;;
  esac
  local before after rps
  before=$(cpu_ticks "$pid")
  rps=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$n" -r 1000000 --csv "${args[@]}" 2>/dev/null \
    | awk -F'","' 'NR > 1 { gsub(/"/, "", $2); print $2; exit }')
  after=$(cpu_ticks "$pid")
  local tick; tick=$(getconf CLK_TCK)
  echo "$rps $(python3 -c "print(f'{($after - $before) / $tick / $n * 1e6:.1f}')")"
  stop_server "$pid"
}

mkdir -p Benchmarks/results
out=Benchmarks/results/hll-t$THREADS.md
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(redis-server --version | awk '{print $3}'); damselfly --proactor_threads=$THREADS; -c $CLIENTS; one run"
  echo
  echo "| workload | redis-server req/s | Damselfly req/s | Damselfly / Redis | redis-server CPU µs/call | Damselfly CPU µs/call |"
  echo "|----------|-------------------:|----------------:|------------------:|-------------------------:|----------------------:|"
} >"$out"
for workload in pfadd pfcount-1 pfcount-3 pfmerge; do
  read -r r rc < <(run redis "$workload")
  read -r d dc < <(run damselfly "$workload")
  ratio=$(python3 -c "print(f'{$d / $r:.2f}')")
  echo "| $workload | $r | $d | $ratio | $rc | $dc |" >>"$out"
done
cat "$out"

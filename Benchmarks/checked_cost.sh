#!/usr/bin/env bash
# Server CPU per request of two damselfly binaries under the same load, side by side:
# the cost of Swift's runtime checks (-O) against -Ounchecked (docs/benchmarks.md).
#
#   Benchmarks/checked_cost.sh <binary A> <binary B>
#
# For each round and each binary: start it (--proactor_threads=2), run redis-benchmark
# -c 50 -n $N -r 100000 -t set,get at pipeline 1 and 16, and read the server's utime+stime
# from /proc/<pid>/stat around each run. Binaries alternate within a round, so drift in a
# shared machine hits both alike. Prints one line per run and the median per binary/test:
# microseconds of server CPU per request.
#
# Env: ROUNDS [3], N [300000], FLAGS [--proactor_threads=2]
# A -Ounchecked binary: DAMSELFLY_UNCHECKED=1 swift build -c release --product damselfly --scratch-path .build-unchecked
set -euo pipefail
A="$1"; B="$2"
ROUNDS="${ROUNDS:-3}"; N="${N:-300000}"; FLAGS="${FLAGS:---proactor_threads=2}"
TICK=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
results=$(mktemp)
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$A" "$B"; do
    port=$(free_port)
    "$bin" --port="$port" --bind=127.0.0.1 $FLAGS >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
    for p in 1 16; do
      for t in set get; do
        before=$(cpu_ticks "$pid")
        redis-benchmark -p "$port" -c 50 -n "$N" -r 100000 -P "$p" -t "$t" -q >/dev/null
        after=$(cpu_ticks "$pid")
        us=$(python3 -c "print(f'{($after-$before)/$TICK*1e6/$N:.2f}')")
        echo "round=$round bin=$bin test=$t P=$p cpu_us_per_req=$us" | tee -a "$results"
      done
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
python3 - "$results" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = dict(x.split("=") for x in line.split())
    runs[(f["test"], f["P"], f["bin"])].append(float(f["cpu_us_per_req"]))
print("\nmedian server CPU per request (us):")
for (t, p, b), v in sorted(runs.items()):
    print(f"  {t.upper()} P{p:>2}  {b}: {statistics.median(v):.2f}  (runs: {', '.join(f'{x:.2f}' for x in v)})")
PY
rm -f "$results"

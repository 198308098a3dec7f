#!/usr/bin/env bash
# What a Prometheus scrape costs the server (issue 19; docs/benchmarks.md, "Scrape cost"):
# server CPU per request under the same redis-benchmark load with no scrape and with
# /metrics scraped every second on --admin_port, alternating in each round, plus the CPU
# of one scrape on its own (100 scrapes back to back, divided by 100).
#
#   Benchmarks/metrics_cost.sh            # DAMSELFLY_BIN: the build to measure
#
# Load: redis-benchmark -c 50 -n $N -r 100000 -P 16 -t set,get; server utime+stime from
# /proc/<pid>/stat around each run. Env: N [1000000], FLAGS [--proactor_threads=2], ROUNDS [3]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh
need_tools redis-benchmark redis-cli curl python3
resolve_damselfly_bin
N="${N:-1000000}"; FLAGS="${FLAGS:---proactor_threads=2}"; ROUNDS="${ROUNDS:-3}"
TICK=$(getconf CLK_TCK)
make_workdir

port=$(free_port); admin=$(free_port)
start_damselfly "$port" "$WORKDIR/df.log" $FLAGS "--admin_port=$admin"
wait_ping "$port" damselfly "$WORKDIR/df.log"
curl -sf "http://127.0.0.1:$admin/metrics" >/dev/null || { echo "error: no /metrics on the admin port" >&2; exit 1; }

# One scrape's CPU, alone: 100 scrapes back to back.
before=$(cpu_ticks "$SERVER_PID")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/metrics" >/dev/null; done
after=$(cpu_ticks "$SERVER_PID")
echo "one scrape: $(python3 -c "print(f'{($after-$before)/$TICK*1e6/100:.0f}')") us of server CPU ($(curl -sf "http://127.0.0.1:$admin/metrics" | wc -c) bytes)"

scraper() { while :; do curl -sf "http://127.0.0.1:$admin/metrics" >/dev/null || true; sleep 1; done; }

measure() {  # case test -> prints "us_per_request seconds"
  local before after start end
  before=$(cpu_ticks "$SERVER_PID"); start=$(date +%s.%N)
  redis-benchmark -p "$port" -c 50 -n "$N" -r 100000 -P 16 -t "$2" -q >/dev/null
  after=$(cpu_ticks "$SERVER_PID"); end=$(date +%s.%N)
  python3 -c "print(f'{($after-$before)/$TICK*1e6/$N:.3f} {$end-$start:.1f}')"
}

for round in $(seq 1 "$ROUNDS"); do
  for t in set get; do
    read -r none secs_none < <(measure none "$t")
    scraper & spid=$!
    read -r with secs_with < <(measure scrape "$t")
    kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true
    echo "round $round ${t^^} P16: no scrape $none us/request (${secs_none} s), scrape every 1 s $with us/request (${secs_with} s)"
  done
done
stop_server "$SERVER_PID"

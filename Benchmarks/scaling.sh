#!/usr/bin/env bash
# Thread scaling of Damselfly on a many-core machine (made for the 16-core lent machine).
#
#   Benchmarks/scaling.sh                      # server threads 1 2 4 8 12
#   THREAD_COUNTS="1 2 4" Benchmarks/scaling.sh
#
# For each thread count N the server runs with --proactor_threads=N pinned to CPUs 0..N-1
# (taskset) and damselfly-bench runs pinned to the remaining CPUs (at least 4), one generator
# thread per CPU. Workloads: SET and GET at pipeline 1 and 16 (and the queue drain once the
# server implements LPUSH). A redis-server run on the same load gives the single-thread
# reference. Efficiency = throughput(N) / (N × throughput(1)).
#
# Writes Benchmarks/results/scaling-latest.jsonl and -meta.json; with matplotlib available it
# also rewrites the scaling block of docs/benchmarks.md and docs/img/scaling.png (otherwise
# copy the two result files back and run the report.py command it prints).
#
# Env: DAMSELFLY_BIN, BENCH_BIN (default .build-bench/release/...), THREAD_COUNTS [1 2 4 8 12],
#      SECONDS_PER_RUN [5], ROUNDS [3], CLIENTS per generator thread [8], KEYSPACE [1000000],
#      REDIS_SERVER [redis-server], PYTHON [python3]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

DAMSELFLY_BIN="${DAMSELFLY_BIN:-.build-bench/release/damselfly}"
BENCH_BIN="${BENCH_BIN:-.build-bench/release/damselfly-bench}"
THREAD_COUNTS="${THREAD_COUNTS:-1 2 4 8 12}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-8}"
KEYSPACE="${KEYSPACE:-1000000}"
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
PYTHON="${PYTHON:-python3}"
NCPU=$(nproc)

for f in "$DAMSELFLY_BIN" "$BENCH_BIN"; do
  [[ -x "$f" ]] || { echo "error: $f missing (swift build -c release --scratch-path .build-bench --product ...)" >&2; exit 1; }
done
need_tools taskset "$PYTHON"
DAMSELFLY_BIN=$(realpath "$DAMSELFLY_BIN")

out=Benchmarks/results
mkdir -p "$out"
RESULTS="$out/scaling-latest.jsonl"
: >"$RESULTS"
make_workdir
workdir=$WORKDIR

# Readiness through damselfly-bench itself: the remote machines this runs on may lack redis-cli.
wait_ready() {  # port
  for _ in $(seq 1 200); do
    if "$BENCH_BIN" --port="$1" --threads=1 --clients=1 --requests=1 --quiet >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "error: server on port $1 did not come up" >&2; exit 1
}

# run_load server_label threads port round -> appends result lines
run_load() {
  local label=$1 n=$2 port=$3 round=$4 bench_cpus gen_threads
  local first=$n
  (( NCPU - n < 4 )) && first=$((NCPU - 4))
  bench_cpus="$first-$((NCPU - 1))"
  gen_threads=$((NCPU - first))
  for depth in 1 16; do
    for cmd in SET GET; do
      local ratio=1:0; [[ $cmd == GET ]] && ratio=0:1
      taskset -c "$bench_cpus" "$BENCH_BIN" --port="$port" --threads="$gen_threads" --clients="$CLIENTS" \
        --pipeline="$depth" --test-time="$SECONDS_PER_RUN" --warmup-seconds=1 --ratio="$ratio" \
        --key-maximum=$((KEYSPACE - 1)) --quiet --json-out="$workdir/r.json"
      "$PYTHON" - "$workdir/r.json" "$label" "$n" "$round" "$cmd P$depth" "$bench_cpus" >>"$RESULTS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"tool": "damselfly-bench", "server": sys.argv[2], "server_threads": int(sys.argv[3]),
                  "round": int(sys.argv[4]), "test": sys.argv[5], "pipeline": 0, "rps": r["ops_per_sec"],
                  "p50_us": r["latency_us"]["p50"], "p99_us": r["latency_us"]["p99"], "bench_cpus": sys.argv[6]}))
EOF
      echo "  $label threads=$n $cmd P$depth: $(grep -o '"ops_per_sec": [0-9.]*' "$workdir/r.json" | head -1)" >&2
    done
  done
  # Queue drain, when the server has lists.
  if "$BENCH_BIN" --port="$port" --queues=1 --elements=1 --quiet >/dev/null 2>&1; then
    taskset -c "$bench_cpus" "$BENCH_BIN" --port="$port" --threads="$gen_threads" --queues=16 --elements=20000 \
      --consumers=16 --pipeline=64 --quiet --json-out="$workdir/q.json"
    "$PYTHON" - "$workdir/q.json" "$label" "$n" "$round" >>"$RESULTS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"tool": "damselfly-bench", "server": sys.argv[2], "server_threads": int(sys.argv[3]),
                  "round": int(sys.argv[4]), "test": "QUEUE_DRAIN", "pipeline": 0, "rps": r["drain"]["jobs_per_sec"]}))
EOF
  fi
}

for round in $(seq 1 "$ROUNDS"); do
  for n in $THREAD_COUNTS; do
    port=$(free_port)
    echo "round $round: damselfly --proactor_threads=$n on CPUs 0-$((n - 1))" >&2
    RUN_PREFIX=(taskset -c "0-$((n - 1))")
    start_damselfly "$port" "$workdir/damselfly.log" --proactor_threads="$n"
    wait_ready "$port"
    run_load damselfly "$n" "$port" "$round"
    stop_server "$SERVER_PID"
  done
done

redis_line="not measured"
if command -v "$REDIS_SERVER" >/dev/null; then
  port=$(free_port)
  echo "redis-server reference on CPU 0" >&2
  RUN_PREFIX=(taskset -c 0)
  start_redis "$port" "$workdir/redis.log"
  wait_ready "$port"
  : >"$workdir/redis.jsonl"
  saved=$RESULTS; RESULTS="$workdir/redis.jsonl"
  run_load redis 1 "$port" 1
  RESULTS=$saved
  stop_server "$SERVER_PID"
  redis_line=$("$PYTHON" -c 'import json,sys; print(", ".join(f"{r[\"test\"]} {r[\"rps\"]:,.0f} ops/s" for r in map(json.loads, open(sys.argv[1]))))' "$workdir/redis.jsonl")
fi

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
"$PYTHON" - "$out/scaling-latest-meta.json" <<EOF
import json, sys
json.dump({"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "nproc": $NCPU, "cpu": "${cpu:-unknown}",
           "memory": "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)",
           "kernel": "$(uname -sr)", "damselfly": "$("$DAMSELFLY_BIN" --version 2>/dev/null | head -1)",
           "damselfly_flags": "--proactor_threads=N", "swift": "static build",
           "redis": "$("$REDIS_SERVER" --version 2>/dev/null | awk '{print $3}' | sed 's/v=//')", "redis_benchmark": "n/a",
           "generator": "--clients=$CLIENTS per thread, --test-time=$SECONDS_PER_RUN --warmup-seconds=1, $KEYSPACE keys",
           "bench_cpus": "N..$((NCPU - 1)) (at least 4)", "redis_rps": "$redis_line"}, open(sys.argv[1], "w"))
EOF

cmd=(Benchmarks/report.py scaling --results "$RESULTS" --meta "$out/scaling-latest-meta.json" --markdown docs/benchmarks.md --images docs/img)
if "$PYTHON" -c 'import matplotlib' 2>/dev/null; then
  "$PYTHON" "${cmd[@]}"
  echo "wrote docs/benchmarks.md (scaling block) and docs/img/scaling.png" >&2
else
  echo "matplotlib missing here: copy $RESULTS and $out/scaling-latest-meta.json back and run:" >&2
  echo "  .build-bench/plotenv/bin/python ${cmd[*]}" >&2
fi

#!/usr/bin/env bash
# Queue drain ladder (issue 5): the shape of Sidekiq's multi_queue_bench, side by side with
# redis-server, for Damselfly with round robin / single-hop blocking switched on step by step.
#
#   Benchmarks/queue_ladder.sh                        # threads 1 and 2, queues = threads and 4
#   THREAD_COUNTS="1 2 4 8" QUEUE_COUNTS=same Benchmarks/queue_ladder.sh   # the 16-core ladder
#
# For each server thread count T and queue count Q (by default Q = T and Q = 4), each round runs
#   redis     redis-server --save '' --appendonly no
#   A         damselfly --proactor_threads=T --nosinglehop_blocking            (round robin off, single-hop off)
#   B         damselfly --proactor_threads=T --nosinglehop_blocking --shard_round_robin_prefix=queue:
#   C         damselfly --proactor_threads=T --singlehop_blocking   --shard_round_robin_prefix=queue:
# every one a fresh server, then
#   damselfly-bench --queues=Q --queue-prefix=queue:q --elements=N --consumers=Q --drain-mode=per-queue
# i.e. Q queues queue:q0.. filled with N Sidekiq-shaped job payloads each (pipelined LPUSH), then
# Q consumer connections each BRPOP-ing its own queue (2 s timeout) until all are empty. The figure
# is jobs/s of the drain (first BRPOP sent to last job received). After each Damselfly run the
# script prints INFO TRANSACTION's tx_type_cnt and INFO's connection_migrations.
# The table reports the median over the rounds.
#
# Env (defaults in brackets)
#   THREAD_COUNTS   server thread counts ["1 2"]
#   QUEUE_COUNTS    queue counts per thread count, "same" meaning Q = T ["same 4"]
#   ELEMENTS        jobs per queue [25000]
#   ROUNDS          rounds [3]
#   BENCH_THREADS   damselfly-bench threads [2]
#   TASKSET_SERVER, TASKSET_BENCH   optional CPU lists (taskset -c) for server and generator
#   DAMSELFLY_BIN, BENCH_BIN        prebuilt binaries (default: build with --scratch-path .build-bench)
#   RESULTS         JSONL of every run [Benchmarks/results/queue-ladder-latest.jsonl]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

THREAD_COUNTS="${THREAD_COUNTS:-1 2}"
QUEUE_COUNTS="${QUEUE_COUNTS:-same 4}"
ELEMENTS="${ELEMENTS:-25000}"
ROUNDS="${ROUNDS:-3}"
BENCH_THREADS="${BENCH_THREADS:-2}"
RESULTS="${RESULTS:-Benchmarks/results/queue-ladder-latest.jsonl}"

need_tools redis-server redis-cli python3
if [[ -z "${DAMSELFLY_BIN:-}" || -z "${BENCH_BIN:-}" ]]; then
  echo "building release binaries (.build-bench)..." >&2
  swift build -c release --scratch-path .build-bench --product damselfly >&2
  swift build -c release --scratch-path .build-bench --product damselfly-bench >&2
  DAMSELFLY_BIN="${DAMSELFLY_BIN:-.build-bench/release/damselfly}"
  BENCH_BIN="${BENCH_BIN:-.build-bench/release/damselfly-bench}"
fi

DAMSELFLY_BIN=$(realpath "$DAMSELFLY_BIN")
make_workdir
workdir=$WORKDIR
server_pid=""

# start_server config threads -> sets PORT, server_pid (pinned with TASKSET_SERVER when set)
start_server() {
  local config=$1 threads=$2
  PORT=$(free_port)
  RUN_PREFIX=()
  [[ -n "${TASKSET_SERVER:-}" ]] && RUN_PREFIX=(taskset -c "$TASKSET_SERVER")
  case "$config" in
    redis) start_redis "$PORT" "$workdir/server.log" ;;
    A) start_damselfly "$PORT" "$workdir/server.log" --proactor_threads="$threads" --nosinglehop_blocking ;;
    B) start_damselfly "$PORT" "$workdir/server.log" --proactor_threads="$threads" --nosinglehop_blocking \
         --shard_round_robin_prefix=queue: ;;
    C) start_damselfly "$PORT" "$workdir/server.log" --proactor_threads="$threads" --singlehop_blocking \
         --shard_round_robin_prefix=queue: ;;
  esac
  RUN_PREFIX=()
  server_pid=$SERVER_PID
  wait_ping "$PORT" "$config" "$workdir/server.log"
}

mkdir -p "$(dirname "$RESULTS")"
: >"$RESULTS"
started=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  for threads in $THREAD_COUNTS; do
    qs=()
    for q in $QUEUE_COUNTS; do
      [[ $q == same ]] && q=$threads
      [[ " ${qs[*]} " == *" $q "* ]] || qs+=("$q")
    done
    for queues in "${qs[@]}"; do
      for config in redis A B C; do
        start_server "$config" "$threads"
        json="$workdir/run.json"
        run_on "${TASKSET_BENCH:-}" "$BENCH_BIN" --port="$PORT" --threads="$BENCH_THREADS" --queues="$queues" \
          --queue-prefix=queue:q --elements="$ELEMENTS" --consumers="$queues" --drain-mode=per-queue \
          --pipeline=64 --quiet --json-out="$json"
        tx="" mig="" rr=""
        if [[ $config != redis ]]; then
          tx=$(redis-cli -h 127.0.0.1 -p "$PORT" INFO TRANSACTION | tr -d '\r' | awk -F: '/^tx_type_cnt:/ {print $2}')
          mig=$(redis-cli -h 127.0.0.1 -p "$PORT" INFO | tr -d '\r' | awk -F: '/^connection_migrations:/ {print $2}')
          rr=$(redis-cli -h 127.0.0.1 -p "$PORT" INFO | tr -d '\r' | awk -F: '/^shard_round_robin_table_size:/ {print $2}')
        fi
        stop_server "$server_pid"
        python3 - "$json" "$round" "$threads" "$queues" "$config" "$tx" "$mig" "$rr" <<'EOF' | tee -a "$RESULTS" >&2
import json, sys
r = json.load(open(sys.argv[1]))
d = r["drain"]
print(json.dumps({"round": int(sys.argv[2]), "threads": int(sys.argv[3]), "queues": int(sys.argv[4]),
                  "config": sys.argv[5], "drain_jobs_per_sec": round(d["jobs_per_sec"], 1),
                  "fill_jobs_per_sec": round(r["fill"]["jobs_per_sec"], 1),
                  "p99_ms": round(d["latency_us"]["p99"] / 1000, 3),
                  "tx_type_cnt": sys.argv[6], "connection_migrations": sys.argv[7],
                  "rr_table_size": sys.argv[8]}))
EOF
      done
    done
  done
done
elapsed=$(( $(date +%s) - started ))

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "machine: nproc=$(nproc), CPU: ${cpu:-unknown}; redis $(redis-server --version | awk '{print $3}' | sed 's/v=//');" \
     "damselfly $(git rev-parse --short HEAD 2>/dev/null || echo unknown); rounds=$ROUNDS, elements/queue=$ELEMENTS," \
     "bench threads=$BENCH_THREADS; ${elapsed}s"
echo
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cells = {}
for r in rows:
    cells.setdefault((r["threads"], r["queues"]), {}).setdefault(r["config"], []).append(r)
print("| threads | queues | redis jobs/s | A: rr off, 1-hop off | B: rr on | C: rr on, 1-hop on | C / redis |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for (t, q), by in sorted(cells.items()):
    med = {c: statistics.median(x["drain_jobs_per_sec"] for x in runs) for c, runs in by.items()}
    ratio = med["C"] / med["redis"] if med.get("redis") else float("nan")
    print(f"| {t} | {q} | {med.get('redis', 0):,.0f} | {med.get('A', 0):,.0f} | {med.get('B', 0):,.0f} | "
          f"{med.get('C', 0):,.0f} | {ratio:.2f} |")
print()
print("INFO TRANSACTION tx_type_cnt and connection_migrations of each Damselfly run (last round):")
last = max(r["round"] for r in rows)
for r in rows:
    if r["round"] == last and r["config"] != "redis":
        print(f"  T={r['threads']} Q={r['queues']} {r['config']}: tx_type_cnt {r['tx_type_cnt']}; "
              f"connection_migrations={r['connection_migrations']}; rr_table_size={r['rr_table_size']}")
EOF

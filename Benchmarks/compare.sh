#!/usr/bin/env bash
# Side-by-side runs of Damselfly and redis-server, written up as docs/benchmarks.md with plots.
#
#   Benchmarks/compare.sh            # full run (3 rounds, about 5-6 minutes on 2 idle cores)
#   Benchmarks/compare.sh --quick    # 1 round, short runs: checks the script end to end
#
# Starts redis-server (--save '' --appendonly no) and Damselfly on free ports, then for each
# round runs every workload against Damselfly (A) and then redis-server (B), so drift in the
# machine hits both alike; tables report the median over the rounds.
#
# Workloads
#   kv        damselfly-bench SET-only and GET-only at pipeline 1, 4, 16, 64 (plot: throughput
#             by depth; table: depths 1 and 16; latency percentiles)
#   rb        redis-benchmark --threads 2 -t set,get at pipeline 1 and 16 (the field's tool)
#   list      redis-benchmark -t lpush,rpop (only if the server answers LPUSH)
#   queue     damselfly-bench queue mode: fill Q queues, drain with BRPOP consumers (jobs/s)
#
# Env (defaults in brackets)
#   DAMSELFLY_FLAGS   server flags [--proactor_threads=2]
#   ROUNDS            rounds [3; quick 1]
#   SECONDS_PER_RUN   damselfly-bench --test-time [2.5; quick 1]
#   THREADS, CLIENTS  generator threads and connections per thread [2, 25] (50 connections,
#                     as redis-benchmark -c 50 --threads 2)
#   KEYSPACE          random keys over this many names [100000]
#   DATA_SIZE         SET value bytes [32]
#   QUEUES, ELEMENTS, CONSUMERS   queue drain shape [4, 25000 per queue, 4]
#   DAMSELFLY_BIN, BENCH_BIN      prebuilt binaries (default: build with --scratch-path .build-bench)
#   OUT_MD            report path [docs/benchmarks.md]; plots go to docs/img/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

QUICK=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

DAMSELFLY_FLAGS="${DAMSELFLY_FLAGS:---proactor_threads=2}"
if [[ $QUICK == 1 ]]; then
  ROUNDS="${ROUNDS:-1}"; SECONDS_PER_RUN="${SECONDS_PER_RUN:-1}"; DEPTHS=(1 16)
  N_P1="${N_P1:-50000}"; N_P16="${N_P16:-400000}"; ELEMENTS="${ELEMENTS:-5000}"
else
  ROUNDS="${ROUNDS:-3}"; SECONDS_PER_RUN="${SECONDS_PER_RUN:-2.5}"; DEPTHS=(1 4 16 64)
  N_P1="${N_P1:-100000}"; N_P16="${N_P16:-1000000}"; ELEMENTS="${ELEMENTS:-25000}"
fi
THREADS="${THREADS:-2}"
CLIENTS="${CLIENTS:-25}"
KEYSPACE="${KEYSPACE:-100000}"
DATA_SIZE="${DATA_SIZE:-32}"
QUEUES="${QUEUES:-4}"
CONSUMERS="${CONSUMERS:-4}"
OUT_MD="${OUT_MD:-docs/benchmarks.md}"
CONNECTIONS=$((THREADS * CLIENTS))

need_tools redis-server redis-benchmark redis-cli python3

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
RESULTS="$workdir/results.jsonl"
: >"$RESULTS"

DF_PORT=$(free_port)
# shellcheck disable=SC2086 # DAMSELFLY_FLAGS is a list of flags
start_damselfly "$DF_PORT" "$workdir/damselfly.log" $DAMSELFLY_FLAGS
wait_ping "$DF_PORT" damselfly "$workdir/damselfly.log"
RS_PORT=$(free_port)
start_redis "$RS_PORT" "$workdir/redis.log"
wait_ping "$RS_PORT" redis-server "$workdir/redis.log"

port_of() { [[ $1 == damselfly ]] && echo "$DF_PORT" || echo "$RS_PORT"; }

# Does the server implement LPUSH? (lists arrive with a later issue)
supports_lpush() {
  local reply
  reply=$(redis-cli -h 127.0.0.1 -p "$(port_of "$1")" LPUSH __compare_probe x 2>&1 || true)
  redis-cli -h 127.0.0.1 -p "$(port_of "$1")" DEL __compare_probe >/dev/null 2>&1 || true
  [[ "$reply" =~ ^[0-9]+$ ]]
}
LIST_SERVERS=()
for s in damselfly redis; do
  if supports_lpush "$s"; then LIST_SERVERS+=("$s"); else echo "$s: LPUSH not implemented: list and queue workloads skipped for it" >&2; fi
done
list_ok() { [[ " ${LIST_SERVERS[*]} " == *" $1 "* ]]; }

# record KEY=VALUE... as one JSON line
record() { python3 -c 'import json,sys; print(json.dumps(dict(a.split("=",1) for a in sys.argv[1:])))' "$@" >>"$RESULTS"; }

# damselfly-bench key/value run: server round command depth
run_kv() {
  local server=$1 round=$2 cmd=$3 depth=$4 ratio json="$workdir/kv.json"
  [[ $cmd == SET ]] && ratio=1:0 || ratio=0:1
  "$BENCH_BIN" --port="$(port_of "$server")" --threads="$THREADS" --clients="$CLIENTS" --pipeline="$depth" \
    --test-time="$SECONDS_PER_RUN" --ratio="$ratio" --key-prefix=key: --key-maximum=$((KEYSPACE - 1)) --key-width=12 \
    --data-size="$DATA_SIZE" --quiet --json-out="$json"
  python3 - "$json" "$server" "$round" "$cmd" "$depth" >>"$RESULTS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_us"]
print(json.dumps({"tool": "damselfly-bench", "server": sys.argv[2], "round": int(sys.argv[3]), "test": sys.argv[4],
                  "pipeline": int(sys.argv[5]), "rps": r["ops_per_sec"], "errors": r["errors"],
                  "avg_us": lat["avg"], "p50_us": lat["p50"], "p99_us": lat["p99"], "p999_us": lat["p999"]}))
EOF
}

# redis-benchmark run: server round tests depth n
run_rb() {
  local server=$1 round=$2 tests=$3 depth=$4 n=$5
  redis-benchmark -h 127.0.0.1 -p "$(port_of "$server")" --threads "$THREADS" -c "$CONNECTIONS" -P "$depth" \
    -t "$tests" -n "$n" -r "$KEYSPACE" -d "$DATA_SIZE" --csv 2>/dev/null >"$workdir/rb.csv"
  python3 - "$workdir/rb.csv" "$server" "$round" "$depth" >>"$RESULTS" <<'EOF'
import csv, json, sys
for row in csv.DictReader(open(sys.argv[1])):
    test = row["test"].split()[0]
    print(json.dumps({"tool": "redis-benchmark", "server": sys.argv[2], "round": int(sys.argv[3]), "test": test,
                      "pipeline": int(sys.argv[4]), "rps": float(row["rps"]),
                      "avg_us": 1000 * float(row["avg_latency_ms"]), "p50_us": 1000 * float(row["p50_latency_ms"]),
                      "p99_us": 1000 * float(row["p99_latency_ms"])}))
EOF
}

# damselfly-bench queue mode: server round
run_queue() {
  local server=$1 round=$2 json="$workdir/queue.json"
  "$BENCH_BIN" --port="$(port_of "$server")" --threads="$THREADS" --queues="$QUEUES" --elements="$ELEMENTS" \
    --consumers="$CONSUMERS" --pipeline=64 --quiet --json-out="$json"
  python3 - "$json" "$server" "$round" >>"$RESULTS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["drain"]
print(json.dumps({"tool": "damselfly-bench", "server": sys.argv[2], "round": int(sys.argv[3]), "test": "QUEUE_DRAIN",
                  "pipeline": 1, "rps": d["jobs_per_sec"], "fill_rps": r["fill"]["jobs_per_sec"],
                  "avg_us": d["latency_us"]["avg"], "p50_us": d["latency_us"]["p50"],
                  "p99_us": d["latency_us"]["p99"], "p999_us": d["latency_us"]["p999"]}))
EOF
}

started=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  for depth in "${DEPTHS[@]}"; do
    for cmd in SET GET; do
      for server in damselfly redis; do
        echo "round $round/$ROUNDS: damselfly-bench $cmd -P $depth vs $server" >&2
        run_kv "$server" "$round" "$cmd" "$depth"
      done
    done
  done
  for depth in 1 16; do
    n=$N_P1; [[ $depth == 16 ]] && n=$N_P16
    for server in damselfly redis; do
      echo "round $round/$ROUNDS: redis-benchmark set,get -P $depth vs $server" >&2
      run_rb "$server" "$round" set,get "$depth" "$n"
    done
  done
  for server in damselfly redis; do
    if list_ok "$server"; then
      echo "round $round/$ROUNDS: redis-benchmark lpush,rpop vs $server" >&2
      run_rb "$server" "$round" lpush,rpop 1 "$N_P1"
      echo "round $round/$ROUNDS: queue drain vs $server" >&2
      run_queue "$server" "$round"
    fi
  done
done
elapsed=$(( $(date +%s) - started ))

# Machine and versions, for the report.
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
  echo "{"
  echo "\"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
  echo "\"nproc\": $(nproc),"
  echo "\"cpu\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "${cpu:-unknown}"),"
  echo "\"kernel\": \"$(uname -sr)\","
  echo "\"memory\": \"$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)\","
  echo "\"damselfly\": \"$("$DAMSELFLY_BIN" --version 2>/dev/null | head -1) ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))\","
  echo "\"redis\": \"$(redis-server --version | awk '{print $3}' | sed 's/v=//')\","
  echo "\"redis_benchmark\": \"$(redis-benchmark --version | awk '{print $2}')\","
  echo "\"swift\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$(swift --version 2>/dev/null | head -1)"),"
  echo "\"damselfly_flags\": \"$DAMSELFLY_FLAGS\","
  echo "\"rounds\": $ROUNDS, \"seconds_per_run\": $SECONDS_PER_RUN, \"threads\": $THREADS, \"clients\": $CLIENTS,"
  echo "\"connections\": $CONNECTIONS, \"keyspace\": $KEYSPACE, \"data_size\": $DATA_SIZE,"
  echo "\"n_p1\": $N_P1, \"n_p16\": $N_P16, \"queues\": $QUEUES, \"elements\": $ELEMENTS, \"consumers\": $CONSUMERS,"
  echo "\"depths\": [$(IFS=,; echo "${DEPTHS[*]}")],"
  echo "\"list_servers\": [$(for s in "${LIST_SERVERS[@]}"; do printf '"%s",' "$s"; done | sed 's/,$//')],"
  echo "\"quick\": $QUICK, \"elapsed_s\": $elapsed"
  echo "}"
} >"$workdir/meta.json"

# Plots need matplotlib: a private virtualenv under the ignored .build-bench/.
VENV=.build-bench/plotenv
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  echo "installing matplotlib into $VENV..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet matplotlib
fi
mkdir -p "$(dirname "$OUT_MD")"
mkdir -p Benchmarks/results
cp "$RESULTS" Benchmarks/results/compare-latest.jsonl
cp "$workdir/meta.json" Benchmarks/results/compare-latest-meta.json
"$VENV/bin/python" Benchmarks/report.py compare --results "$RESULTS" --meta "$workdir/meta.json" \
  --markdown "$OUT_MD" --images "$(dirname "$OUT_MD")/img"
echo "compare.sh: done in ${elapsed}s of runs; wrote $OUT_MD" >&2

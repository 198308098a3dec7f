#!/usr/bin/env bash
# Side-by-side throughput: Damselfly vs redis-server with redis-benchmark.
#
#   Benchmarks/bench_vs_redis.sh
#
# Env:
#   N_P1=200000       requests per test at pipeline depth 1
#   N_P16=2000000     requests per test at pipeline depth 16
#   CLIENTS=50        parallel connections (-c)
#   KEYSPACE=100000   -r: random keys over this many names, so load spreads over
#                     shards (KEYSPACE=0: redis-benchmark's single fixed key)
#   DAMSELFLY_BIN     binary to run (default: build .build/release/damselfly)
#   DAMSELFLY_FLAGS   extra flags for Damselfly (default thread count: --proactor_threads=2)
#
# Prints a table and writes it as markdown to Benchmarks/results/latest.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

N_P1="${N_P1:-200000}"
N_P16="${N_P16:-2000000}"
CLIENTS="${CLIENTS:-50}"
KEYSPACE="${KEYSPACE:-100000}"
RANDOM_KEYS=()
[[ "$KEYSPACE" != 0 ]] && RANDOM_KEYS=(-r "$KEYSPACE")
THREADS_FLAG="--proactor_threads=2"

need_tools redis-server redis-benchmark redis-cli python3

resolve_damselfly_bin

make_workdir
workdir=$WORKDIR

DF_PORT=$(free_port)
# shellcheck disable=SC2086 # DAMSELFLY_FLAGS is a list of flags
start_damselfly "$DF_PORT" "$workdir/damselfly.log" "$THREADS_FLAG" ${DAMSELFLY_FLAGS:-}
wait_ping "$DF_PORT" damselfly "$workdir/damselfly.log"

RS_PORT=$(free_port)
start_redis "$RS_PORT" "$workdir/redis.log"
wait_ping "$RS_PORT" redis-server "$workdir/redis.log"

# bench PORT PIPELINE N -> lines "TEST rps"
bench() {
  redis-benchmark -h 127.0.0.1 -p "$1" -t set,get -c "$CLIENTS" -n "$3" -P "$2" "${RANDOM_KEYS[@]}" --csv 2>/dev/null \
    | awk -F'","' 'NR > 1 { gsub(/"/, "", $1); print $1, $2 }'
}

rows=()
for depth in 1 16; do
  n=$N_P1; [[ $depth == 16 ]] && n=$N_P16
  echo "running: -P $depth -n $n -c $CLIENTS (damselfly, then redis)" >&2
  df=$(bench "$DF_PORT" "$depth" "$n")
  rs=$(bench "$RS_PORT" "$depth" "$n")
  for t in SET GET; do
    d=$(awk -v t="$t" '$1 == t { print $2 }' <<<"$df")
    r=$(awk -v t="$t" '$1 == t { print $2 }' <<<"$rs")
    [[ -n "$d" && -n "$r" ]] || { echo "error: no $t result at -P $depth (damselfly='$d' redis='$r')" >&2; exit 1; }
    ratio=$(awk -v a="$d" -v b="$r" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    rows+=("$t $depth $d $r $ratio")
  done
done

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
machine="$(nproc) CPUs, ${cpu:-unknown CPU}, Linux $(uname -r)"

printf '\n%-6s %6s %16s %16s %8s\n' test depth damselfly_rps redis_rps ratio
for row in "${rows[@]}"; do
  read -r t depth d r ratio <<<"$row"
  printf '%-6s %6s %16s %16s %8s\n' "$t" "$depth" "$d" "$r" "$ratio"
done
echo "machine: $machine"

mkdir -p Benchmarks/results
{
  echo "# Damselfly vs Redis"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $machine"
  echo "- damselfly: \`$DAMSELFLY_BIN $THREADS_FLAG ${DAMSELFLY_FLAGS:-}\`"
  echo "- redis: $(redis-server --version | awk '{print $3}') (\`--save '' --appendonly no\`)"
  echo "- redis-benchmark: \`-t set,get -c $CLIENTS ${RANDOM_KEYS[*]}\`, -n $N_P1 at -P 1, -n $N_P16 at -P 16"
  echo
  echo "| test | depth | damselfly rps | redis rps | ratio |"
  echo "|------|------:|--------------:|----------:|------:|"
  for row in "${rows[@]}"; do
    read -r t depth d r ratio <<<"$row"
    echo "| $t | $depth | $d | $r | $ratio |"
  done
} > Benchmarks/results/latest.md
echo "wrote Benchmarks/results/latest.md"

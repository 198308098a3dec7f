#!/usr/bin/env bash
# Streams, Damselfly vs redis-server side by side (issue 14's benchmark).
#
#   Benchmarks/stream_bench.sh                 # xadd, drain and memory
#   MODE=xadd,drain Benchmarks/stream_bench.sh # leave out the 1M-entry memory case
#
# Workloads, each against a fresh server (redis-server, then Damselfly at each of THREADS),
# repeated ROUNDS times with the servers alternating; the tables give each figure's median:
#   xadd    redis-benchmark sends XADD of a 5-field job-like record (`*` IDs, a random
#           jid) with -c CLIENTS, at P1 and P16: requests/s, and the server's CPU per entry
#           (utime + stime from /proc/<pid>/stat before and after, divided by the entries).
#   drain   damselfly-bench --streams (compiled, so the clients do not bound the servers):
#           STREAMS streams of N_DRAIN records in all (pipelined XADD), group g on each;
#           CONSUMERS consumers (one thread each, consumer k on stream k % STREAMS) loop
#           XREADGROUP COUNT 10 `>` and XACK the batch they got (in the same write as the next
#           XREADGROUP) until their stream is drained: jobs/s over the drain's wall time and the
#           server's CPU per job over the drain; every entry must be delivered and acknowledged
#           once, nothing left pending. Damselfly places the streams with
#           --shard_round_robin_prefix=jobs: so they land on different shards.
#   memory  N_MEM records pipelined by XADD with explicit IDs into one stream: RSS growth
#           (VmRSS before / after; both servers first see the same traffic shape storing
#           nothing, XADD NOMKSTREAM to a missing key, so buffers touched for the first
#           time do not count as data) and the ratio Damselfly / Redis (target at most 1.0).
#           Damselfly runs at the first of THREADS; one round.
#   callgrind  (not in the default MODE) each server alone under valgrind --tool=callgrind,
#           Damselfly at 1 thread with --force_epoll (valgrind does not know io_uring; a
#           --strip-debug copy, as valgrind 3.19 cannot read the binary's DWARF 5): instructions
#           executed per XADD (and per SET of a 32-byte value to a random key, the generic
#           per-command path for comparison) over N_CG requests from redis-benchmark -c 1 -P 1,
#           instrumentation on only around them. Repeatable where CPU time is not.
#
# Env: N_XADD=200000, CLIENTS=50, N_DRAIN=200000, STREAMS=4, CONSUMERS=4, N_MEM=1000000, N_CG=20000,
#      THREADS="1 2", ROUNDS=3, MODE=xadd,drain,memory, DAMSELFLY_BIN (default: a release
#      build), BENCH_BIN (damselfly-bench; default: a release build), DAMSELFLY_FLAGS (extra flags).
#
# Prints markdown tables (medians of ROUNDS; the numbers move on a shared machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

N_XADD="${N_XADD:-200000}"
CLIENTS="${CLIENTS:-50}"
N_DRAIN="${N_DRAIN:-200000}"
STREAMS="${STREAMS:-4}"
CONSUMERS="${CONSUMERS:-4}"
N_MEM="${N_MEM:-1000000}"
THREADS="${THREADS:-1 2}"
ROUNDS="${ROUNDS:-3}"
N_CG="${N_CG:-20000}"
MODE="${MODE:-xadd,drain,memory}"

need_tools redis-server redis-benchmark redis-cli python3
resolve_damselfly_bin
if [[ -z "${BENCH_BIN:-}" ]]; then
  swift build -c release --product damselfly-bench
  BENCH_BIN=.build/release/damselfly-bench
fi
BENCH_BIN=$(realpath "$BENCH_BIN")
make_workdir
workdir=$WORKDIR
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# start_server KIND THREADS -> PORT, PID
start_server() {
  PORT=$(free_port)
  if [[ "$1" == damselfly ]]; then
    # shellcheck disable=SC2086 # DAMSELFLY_FLAGS is a list of flags
    start_damselfly "$PORT" "$workdir/server.log" --proactor_threads="$2" --shard_round_robin_prefix=jobs: ${DAMSELFLY_FLAGS:-}
  else
    start_redis "$PORT" "$workdir/server.log"
  fi
  PID=$SERVER_PID
  wait_ping "$PORT" "$1" "$workdir/server.log"
}

cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

# MARK: - xadd

# xadd_run PIPELINE -> "requests/s cpu_us_per_entry"
xadd_run() {
  local before after rps len
  cli del jobs >/dev/null
  before=$(cpu_ticks "$PID")
  rps=$(redis-benchmark -h 127.0.0.1 -p "$PORT" -c "$CLIENTS" -n "$N_XADD" -P "$1" -r 1000000000 --csv \
      XADD jobs '*' class HardJob queue default args '[__rand_int__]' jid __rand_int__ created_at 1700000000.5 \
      2>/dev/null | awk -F'","' 'NR > 1 { gsub(/"/, "", $2); print $2; exit }')
  after=$(cpu_ticks "$PID")
  len=$(cli xlen jobs)
  [[ "$len" == "$N_XADD" ]] || { echo "error: XLEN jobs is $len after $N_XADD XADDs" >&2; exit 1; }
  python3 -c "print('$rps', f'{($after - $before) * $TICK_US / $N_XADD:.2f}')"
}

# MARK: - drain

# drain_run -> "jobs/s cpu_us_per_job": the fill runs first (its CPU not counted), then the
# drain alone between two reads of the server's CPU.
drain_run() {
  local before after per=$((N_DRAIN / STREAMS))
  cli flushall >/dev/null
  local bench=("$BENCH_BIN" --port "$PORT" --streams "$STREAMS" --elements "$per" --consumers "$CONSUMERS" --count 10 --quiet)
  "${bench[@]}" --phase fill || { echo "error: stream fill failed" >&2; exit 1; }
  before=$(cpu_ticks "$PID")
  "${bench[@]}" --phase drain --json-out "$workdir/drain.json" || { echo "error: stream drain failed" >&2; exit 1; }
  after=$(cpu_ticks "$PID")
  for ((k = 0; k < STREAMS; k++)); do
    [[ "$(cli xpending "jobs:$k" g | head -1)" == 0 ]] || { echo "error: jobs:$k has pending entries" >&2; exit 1; }
  done
  python3 - "$workdir/drain.json" "$((after - before))" "$TICK_US" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["drain"]
print(f"{d['jobs_per_sec']:.0f}", f"{int(sys.argv[2]) * int(sys.argv[3]) / d['jobs']:.2f}")
PY
}

# MARK: - memory

# gen_mem FILE KEY: N_MEM XADDs of distinct job records with explicit IDs (NOMKSTREAM when
# KEY is the warm-up's missing key).
gen_mem() {
  python3 - "$N_MEM" "$2" >"$1" <<'EOF'
import sys, random
n, key = int(sys.argv[1]), sys.argv[2].encode()
rng = random.Random(42)
out = sys.stdout.buffer
warm = key == b"no-such-stream"
batch = []
for i in range(n):
    args = [b"XADD", key] + ([b"NOMKSTREAM"] if warm else []) + [b"1700000000000-%d" % i,
            b"class", b"HardJob", b"queue", b"default", b"args", b"[%d]" % i,
            b"jid", b"%024x" % rng.getrandbits(96), b"created_at", b"%.1f" % (1700000000 + i / 1000.0)]
    batch.append(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    if len(batch) == 10000:
        out.write(b"".join(batch))
        batch = []
out.write(b"".join(batch))
EOF
}


pipe() {  # file
  redis-cli -h 127.0.0.1 -p "$PORT" --pipe <"$1" >"$workdir/pipe.log" 2>&1
  grep -q "errors: 0" "$workdir/pipe.log" || { echo "error: loading $1:" >&2; cat "$workdir/pipe.log" >&2; exit 1; }
}

# mem_run -> "rss_growth_bytes"
mem_run() {
  local before after
  pipe "$workdir/mem-warm.resp"
  sleep 1
  before=$(rss_kb "$PID")
  pipe "$workdir/mem.resp"
  sleep 1
  after=$(rss_kb "$PID")
  [[ "$(cli xlen jobs)" == "$N_MEM" ]] || { echo "error: XLEN jobs is not $N_MEM" >&2; exit 1; }
  echo $(((after - before) * 1024))
}

# MARK: - callgrind

XADD_ARGS=(XADD jobs '*' class HardJob queue default args '[__rand_int__]' jid __rand_int__ created_at 1700000000.5)
SET_ARGS=(SET 'key:__rand_int__' xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx)

# cg_run KIND COMMAND... -> instructions per request: the server under callgrind (lib.sh
# cg_start) with instrumentation off, a warm-up, then N_CG requests with it on.
cg_run() {
  local kind=$1
  shift
  cg_start "$kind"
  redis-benchmark -h 127.0.0.1 -p "$CG_PORT" -c 1 -n 2000 -r 100000 "$@" >/dev/null 2>&1
  cg_measure "$N_CG" -r 100000 "$@"
  stop_server "$CG_PID"
}

# MARK: - Running

IFS=, read -ra modes <<<"$MODE"
has() { [[ " ${modes[*]} " == *" $1 "* ]]; }
servers=("redis 0")
for t in $THREADS; do servers+=("damselfly $t"); done
# result[server,figure] holds one value per round, space-separated.
declare -A result
has xadd || has drain || ROUNDS=0
for ((round = 1; round <= ROUNDS; round++)); do
  for s in "${servers[@]}"; do
    read -r kind threads <<<"$s"
    start_server "$kind" "$threads"
    if has xadd; then
      read -r rps cpu <<<"$(xadd_run 1)"
      result[$s,p1]+="$rps "; result[$s,c1]+="$cpu "
      read -r rps cpu <<<"$(xadd_run 16)"
      result[$s,p16]+="$rps "; result[$s,c16]+="$cpu "
    fi
    if has drain; then
      read -r jps cpj <<<"$(drain_run)"
      result[$s,jps]+="$jps "; result[$s,cpj]+="$cpj "
    fi
    stop_server "$PID"
  done
done
label() { [[ "$1" == "redis 0" ]] && echo "redis-server" || echo "Damselfly, ${1#damselfly } thread(s)"; }
# median "v1 v2 ..." -> the median, grouped by thousands when at least 1,000
median() { python3 -c 'import statistics, sys; m = statistics.median(float(v) for v in sys.argv[1:]); print(f"{m:,.0f}" if m >= 1000 else f"{m:.2f}")' $1; }

echo "Damselfly: $DAMSELFLY_BIN ${DAMSELFLY_FLAGS:-}; $(redis-server --version | cut -d' ' -f1-3); $(nproc) vCPUs; medians of $ROUNDS rounds"
if has xadd; then
  echo
  echo "XADD of a 5-field record, $N_XADD entries, -c $CLIENTS:"
  echo
  echo "| server | P1 XADD/s | P1 CPU µs/entry | P16 XADD/s | P16 CPU µs/entry |"
  echo "|---|---:|---:|---:|---:|"
  for s in "${servers[@]}"; do
    echo "| $(label "$s") | $(median "${result[$s,p1]}") | $(median "${result[$s,c1]}") | $(median "${result[$s,p16]}") | $(median "${result[$s,c16]}") |"
  done
fi
if has drain; then
  echo
  echo "Consumer-group drain, $N_DRAIN entries over $STREAMS streams, $CONSUMERS consumers (XREADGROUP COUNT 10 + XACK, damselfly-bench):"
  echo
  echo "| server | jobs/s | CPU µs/job |"
  echo "|---|---:|---:|"
  for s in "${servers[@]}"; do
    echo "| $(label "$s") | $(median "${result[$s,jps]}") | $(median "${result[$s,cpj]}") |"
  done
fi
if has callgrind; then
  declare -A cg
  for kind in redis damselfly; do
    cg[$kind,xadd]=$(cg_run "$kind" "${XADD_ARGS[@]}")
    cg[$kind,set]=$(cg_run "$kind" "${SET_ARGS[@]}")
  done
  echo
  echo "Instructions per request under callgrind (redis-benchmark -c 1 -P 1, $N_CG requests; Damselfly 1 thread, epoll):"
  echo
  echo "| command | redis-server | Damselfly | ratio |"
  echo "|---|---:|---:|---:|"
  for c in xadd set; do
    python3 -c "import sys; r, d = int(sys.argv[2]), int(sys.argv[3]); print(f'| {sys.argv[1]} | {r:,} | {d:,} | {d / r:.2f} |')" \
      "${c^^}" "${cg[redis,$c]}" "${cg[damselfly,$c]}"
  done
fi
if has memory; then
  gen_mem "$workdir/mem-warm.resp" no-such-stream
  gen_mem "$workdir/mem.resp" jobs
  first_threads=${THREADS%% *}
  start_server redis 0
  redis_growth=$(mem_run)
  stop_server "$PID"
  start_server damselfly "$first_threads"
  df_growth=$(mem_run)
  stop_server "$PID"
  echo
  echo "Memory, $N_MEM entries of a 5-field job record (explicit IDs, pipelined XADD):"
  echo
  python3 - "$N_MEM" "$redis_growth" "$df_growth" "$first_threads" <<'EOF'
import sys
n, r, d, t = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print("| server | RSS growth | bytes/entry |")
print("|---|---:|---:|")
print(f"| redis-server | {r / 2**20:.1f} MiB | {r / n:.1f} |")
print(f"| Damselfly, {t} thread(s) | {d / 2**20:.1f} MiB | {d / n:.1f} |")
print(f"\nratio Damselfly / Redis: {d / r:.3f}")
EOF
fi

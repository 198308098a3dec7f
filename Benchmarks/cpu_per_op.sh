#!/usr/bin/env bash
# CPU per request (issue 16): what one command and one hop cost, redis-server and Damselfly side
# by side in one run (docs/benchmarks.md "CPU per request").
#
#   Benchmarks/cpu_per_op.sh                      # MODE=ops,queue: CPU time per request
#   MODE=callgrind Benchmarks/cpu_per_op.sh       # instructions per request under callgrind
#
# ops       for redis-server and Damselfly at each of THREADS (each a fresh server): redis-benchmark
#           -c CLIENTS -n N -r KEYSPACE -d 32 -P p -t t for t in SET GET LPUSH RPOP and p in
#           PIPELINES, in that order (GET reads what SET wrote, RPOP pops what LPUSH pushed). The
#           server's utime+stime from /proc/<pid>/stat around each run divided by N is the server
#           CPU per request; the load generator's own user+sys CPU per request is printed beside it.
#           A second table gives the server's stime alone: the kernel's share (most of a P1 request,
#           for every server: one receive and one send per request).
# queue     damselfly-bench queue mode (Sidekiq's multi_queue_bench shape): QUEUES queues of
#           ELEMENTS jobs filled with pipelined LPUSH, then drained by one BRPOP connection per
#           queue; server CPU per job over fill and drain, and the drain's jobs/s. Damselfly runs
#           with --shard_round_robin_prefix=queue: so the queues spread over the shards.
# callgrind each server alone under valgrind (lib.sh cg_start / cg_measure; Damselfly 1 thread,
#           epoll): instructions per request of N_CG requests from redis-benchmark -c 1 for the same
#           four commands at the same pipelines. User-space instructions only (the kernel's share of
#           a request, a larger part at P1, is not counted), but repeatable within a few per cent
#           on a machine whose CPU times move by tens of per cent. CG_QUEUE=1 (default) adds
#           BRPOP on a queue holding N_CG jobs (filled by pipelined LPUSH, not counted).
#           CG_THREADS="1 2" also runs Damselfly at 2 threads (valgrind runs one thread at a time:
#           the count includes every instruction of the hops, not what they cost in cache misses).
#           CG_RANGE=1 adds LRANGE 0 99 of a 100-element list and HGETALL of a 100-field hash
#           (filled first, not counted).
#           TESTS takes any redis-benchmark -t name (sadd, hset, zadd, incr, mset, ...).
#           TESTS also takes push (Sidekiq 6's push: MULTI, SADD queues default,
#           LPUSH queue:qN job, EXEC, as one request) and push-pipelined (Sidekiq 7's: the SADD
#           and LPUSH pipelined), sent by damselfly-bench --shape over 64 queues.
#           CG_CLIENTS=50 loads with 50 connections instead of 1 (a loop then finds several
#           clients' commands per wake-up, as in the CPU-time runs). SLOWLOG is off under callgrind.
#
# Env (defaults in brackets): MODE [ops,queue], N [300000], CLIENTS [50], KEYSPACE [100000],
#   PIPELINES ["1 16"], TESTS ["set get lpush rpop"], THREADS ["1 2"], ROUNDS [1] (medians over
#   rounds, servers alternating within a round, in reverse order on even rounds: use an even
#   ROUNDS for before/after figures), QUEUES [4], ELEMENTS [50000], N_CG [20000], CG_QUEUE [1],
#   CG_THREADS [1] (Damselfly's thread counts under callgrind), CG_CLIENTS [1], CG_RANGE [0],
#   DAMSELFLY_BIN / BENCH_BIN (default: release builds), DAMSELFLY_FLAGS (extra flags),
#   BASE_BIN (another damselfly binary, "before": measured beside DAMSELFLY_BIN in every mode),
#   BASE_FLAGS (flags for the "before" server only, after DAMSELFLY_FLAGS: BASE_BIN=$DAMSELFLY_BIN
#   BASE_FLAGS=--pipeline_squash=0 weighs a flag on one binary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

MODE="${MODE:-ops,queue}"
N="${N:-300000}"
CLIENTS="${CLIENTS:-50}"
KEYSPACE="${KEYSPACE:-100000}"
PIPELINES="${PIPELINES:-1 16}"
TESTS="${TESTS:-set get lpush rpop}"
THREADS="${THREADS:-1 2}"
ROUNDS="${ROUNDS:-1}"
QUEUES="${QUEUES:-4}"
ELEMENTS="${ELEMENTS:-50000}"
N_CG="${N_CG:-20000}"
CG_QUEUE="${CG_QUEUE:-1}"
CG_THREADS="${CG_THREADS:-1}"
# A Sidekiq-shaped job (about 200 bytes), for the callgrind BRPOP row.
JOB='{"class":"HardJob","args":[1,2,3],"retry":true,"queue":"default","jid":"b4a577edbccf1d805744efa9","created_at":1700000000.1234567,"enqueued_at":1700000000.1234568}'
read -ra EXTRA <<<"${DAMSELFLY_FLAGS:-}"
read -ra BASE_EXTRA <<<"${BASE_FLAGS:-}"

IFS=, read -ra modes <<<"$MODE"
has() { [[ " ${modes[*]} " == *" $1 "* ]]; }

need_tools redis-server redis-benchmark redis-cli python3
resolve_damselfly_bin
if { has queue || [[ " $TESTS " == *" push"* ]]; } && [[ -z "${BENCH_BIN:-}" ]]; then
  swift build -c release --product damselfly-bench
  BENCH_BIN=.build/release/damselfly-bench
fi
make_workdir
results="$WORKDIR/results"
: >"$results"
TICK=$(getconf CLK_TCK)

# start KIND THREADS — a fresh server; sets PID, PORT.
start() {
  PORT=$(free_port)
  local DAMSELFLY_BIN=$DAMSELFLY_BIN flags=(${EXTRA[@]+"${EXTRA[@]}"})
  [[ $1 == base ]] && DAMSELFLY_BIN=$BASE_BIN && flags+=(${BASE_EXTRA[@]+"${BASE_EXTRA[@]}"})
  if [[ $1 == redis ]]; then
    start_redis "$PORT" "$WORKDIR/server.log"
  else
    start_damselfly "$PORT" "$WORKDIR/server.log" --proactor_threads="$2" --shard_round_robin_prefix=queue: \
      ${flags[@]+"${flags[@]}"}
  fi
  PID=$SERVER_PID
  wait_ping "$PORT" "$1" "$WORKDIR/server.log"
}

# record SERVER WORKLOAD FIELD VALUE — one figure of one run.
record() { echo "$1|$2|$3|$4" >>"$results"; }

# timed OUT COMMAND... — runs COMMAND (its output to /dev/null); OUT gets its user+sys seconds.
timed() {
  local out=$1
  shift
  local TIMEFORMAT='%U %S'
  { time "$@" >/dev/null 2>&1; } 2>"$out"
}

[[ -n "${BASE_BIN:-}" ]] && BASE_BIN=$(realpath "$BASE_BIN")
servers=("redis 0")
for t in $THREADS; do
  [[ -n "${BASE_BIN:-}" ]] && servers+=("base $t")
  servers+=("damselfly $t")
done
label() {
  case $1 in
    redis*) echo "redis-server" ;;
    base*) echo "before ${1#base }T" ;;
    *) echo "Damselfly ${1#damselfly }T" ;;
  esac
}

for ((round = 1; round <= ROUNDS; round++)); do
  # Even rounds take the servers in reverse order: on the 2-vCPU VM a server's place in the round
  # alone moved its figure by up to 20 % (the same binary measured 1.10 and 1.45 µs), so with an
  # even ROUNDS every server is measured as often in each place.
  order=("${servers[@]}")
  if ((round % 2 == 0)); then
    order=()
    for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[$i]}"); done
  fi
  for s in "${order[@]}"; do
    read -r kind threads <<<"$s"
    name=$(label "$s")
    if has ops; then
      start "$kind" "$threads"
      for p in $PIPELINES; do
        for t in $TESTS; do
          before=$(cpu_ticks "$PID")
          sys_before=$(sys_ticks "$PID")
          case $t in
            push | push-pipelined)
              # Sidekiq's push (damselfly-bench --shape): a MULTI block or a pipelined pair per
              # request, into one of 64 queues; one generator thread, CLIENTS connections.
              timed "$WORKDIR/gen.time" "$BENCH_BIN" --port="$PORT" --threads=1 --clients="$CLIENTS" \
                --pipeline="$p" --requests=$((N / CLIENTS)) --shape="$t" --key-prefix=queue:q --key-maximum=63 --quiet
              ;;
            *)
              timed "$WORKDIR/gen.time" redis-benchmark -h 127.0.0.1 -p "$PORT" -c "$CLIENTS" -n "$N" -r "$KEYSPACE" \
                -d 32 -P "$p" -t "$t" -q
              ;;
          esac
          after=$(cpu_ticks "$PID")
          sys_after=$(sys_ticks "$PID")
          w="${t^^} P$p"
          record "$name" "$w" server "$(python3 -c "print(($after - $before) / $TICK * 1e6 / $N)")"
          record "$name" "$w" kernel "$(python3 -c "print(($sys_after - $sys_before) / $TICK * 1e6 / $N)")"
          record "$name" "$w" generator "$(awk -v n="$N" '{ print ($1 + $2) * 1e6 / n }' "$WORKDIR/gen.time")"
          echo "round $round $name $w: server $(tail -3 "$results" | head -1 | cut -d'|' -f4) µs/req" >&2
        done
      done
      stop_server "$PID"
    fi
    if has queue; then
      start "$kind" "$threads"
      jobs=$((QUEUES * ELEMENTS))
      before=$(cpu_ticks "$PID")
      "$BENCH_BIN" --port="$PORT" --threads=2 --queues="$QUEUES" --queue-prefix=queue:q --elements="$ELEMENTS" \
        --consumers="$QUEUES" --drain-mode=per-queue --pipeline=64 --quiet --json-out="$WORKDIR/q.json" >/dev/null
      after=$(cpu_ticks "$PID")
      stop_server "$PID"
      w="queue fill + BRPOP drain ($QUEUES × $ELEMENTS)"
      record "$name" "$w" server "$(python3 -c "print(($after - $before) / $TICK * 1e6 / $jobs)")"
      record "$name" "$w" drain_jobs_per_sec \
        "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['drain']['jobs_per_sec'])" "$WORKDIR/q.json")"
      echo "round $round $name queue: server $(tail -2 "$results" | head -1 | cut -d'|' -f4) µs/job" >&2
    fi
  done
done

if has callgrind; then
  kinds=("redis 1")
  for t in $CG_THREADS; do
    [[ -n "${BASE_BIN:-}" ]] && kinds+=("base $t")
    kinds+=("damselfly $t")
  done
  for s in "${kinds[@]}"; do
    read -r kind threads <<<"$s"
    name=$(label "$s")
    CG_DAMSELFLY_BIN=$DAMSELFLY_BIN
    [[ $kind == base ]] && CG_DAMSELFLY_BIN=$BASE_BIN
    # cg_start's own --proactor_threads=1 comes first: the later flag wins.
    flags=(${EXTRA[@]+"${EXTRA[@]}"})
    [[ $kind == base ]] && flags+=(${BASE_EXTRA[@]+"${BASE_EXTRA[@]}"})
    if [[ $kind == redis ]]; then cg_start redis; else cg_start damselfly --proactor_threads="$threads" ${flags[@]+"${flags[@]}"}; fi
    redis-benchmark -h 127.0.0.1 -p "$CG_PORT" -c 1 -n 2000 -r "$KEYSPACE" -d 32 -t set >/dev/null 2>&1
    for p in $PIPELINES; do
      for t in $TESTS; do
        case $t in
          push | push-pipelined)
            record "$name" "${t^^} P$p" instructions "$(cg_measure_run "$N_CG" "$BENCH_BIN" --port="$CG_PORT" \
              --threads=1 --clients="${CG_CLIENTS:-1}" --pipeline="$p" --requests=$((N_CG / ${CG_CLIENTS:-1})) \
              --shape="$t" --key-prefix=queue:q --key-maximum=63 --quiet)"
            ;;
          *) record "$name" "${t^^} P$p" instructions "$(cg_measure "$N_CG" -r "$KEYSPACE" -d 32 -P "$p" -t "$t")" ;;
        esac
        echo "callgrind $name ${t^^} P$p: $(tail -1 "$results" | cut -d'|' -f4) instructions/req" >&2
      done
    done
    if [[ $CG_QUEUE == 1 ]]; then
      # A worker's BRPOP on a queue that holds jobs (the drain's common case): the queue is
      # filled with N_CG Sidekiq-sized jobs by pipelined LPUSH, not counted, then emptied.
      redis-benchmark -h 127.0.0.1 -p "$CG_PORT" -c 1 -n "$N_CG" -P 16 lpush queue:cg "$JOB" >/dev/null 2>&1
      record "$name" "BRPOP P1 (ready queue)" instructions "$(cg_measure "$N_CG" brpop queue:cg 1)"
      echo "callgrind $name BRPOP P1 (ready queue): $(tail -1 "$results" | cut -d'|' -f4) instructions/req" >&2
    fi
    if [[ ${CG_RANGE:-0} == 1 ]]; then
      # LRANGE of a whole 100-element list (redis-benchmark's LRANGE_100 shape, without the
      # LPUSHes its -t lrange_100 runs first): the list is filled beforehand, not counted.
      redis-benchmark -h 127.0.0.1 -p "$CG_PORT" -c 1 -n 100 -P 16 rpush list:cg "element:__rand_int__" >/dev/null 2>&1
      record "$name" "LRANGE 0 99 P1" instructions "$(cg_measure "$((N_CG / 10))" lrange list:cg 0 99)"
      echo "callgrind $name LRANGE 0 99 P1: $(tail -1 "$results" | cut -d'|' -f4) instructions/req" >&2
      # HGETALL of a 100-field hash of short values (a listpack in both servers: under 128 fields).
      for i in $(seq 100); do echo "HSET hash:cg field:$i value:$i"; done |
        redis-cli -h 127.0.0.1 -p "$CG_PORT" ${LIB_CLI_ARGS[@]+"${LIB_CLI_ARGS[@]}"} >/dev/null
      record "$name" "HGETALL (100 fields) P1" instructions "$(cg_measure "$((N_CG / 10))" hgetall hash:cg)"
      echo "callgrind $name HGETALL (100 fields) P1: $(tail -1 "$results" | cut -d'|' -f4) instructions/req" >&2
    fi
    stop_server "$CG_PID"
  done
fi

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "machine: nproc=$(nproc), ${cpu:-unknown CPU}, load average $(cut -d' ' -f1-3 /proc/loadavg);" \
  "redis $(redis-server --version | awk '{print $3}' | sed 's/v=//'); damselfly $(git rev-parse --short HEAD 2>/dev/null || echo '?');" \
  "N=$N, clients=$CLIENTS, keyspace=$KEYSPACE, rounds=$ROUNDS, N_CG=$N_CG, CG_CLIENTS=${CG_CLIENTS:-1}"
echo
python3 - "$results" <<'PY'
import collections, statistics, sys
vals = collections.defaultdict(list)
order, servers = [], []
for line in open(sys.argv[1]):
    server, workload, field, value = line.rstrip("\n").split("|")
    vals[(server, workload, field)].append(float(value))
    if workload not in order:
        order.append(workload)
    if server not in servers:
        servers.append(server)
med = lambda s, w, f: statistics.median(vals[(s, w, f)]) if vals.get((s, w, f)) else None
fmt = lambda x, d=2: "–" if x is None else f"{x:,.{d}f}"
ratio = lambda a, b: "–" if a is None or not b else f"{a / b:.2f}"
for field, unit, digits in (("server", "server CPU µs per request", 2),
                            ("kernel", "of which in the kernel (stime) µs per request", 2),
                            ("instructions", "instructions per request", 0)):
    rows = [w for w in order if med("redis-server", w, field) is not None]
    if not rows:
        continue
    names = [n for n in servers if any(med(n, w, field) is not None for w in rows)]
    ours = names[1:]
    # n threads against 1 thread of the same binary: the hop's share.
    scaled = [(n, n[:-2] + "1T") for n in ours if not n.endswith(" 1T") and n[:-2] + "1T" in ours]
    head = [unit] + names + [f"{n} ÷ Redis" for n in ours] + [f"{n} ÷ {one}" for n, one in scaled]
    if field == "server":
        head += ["generator µs/req (Redis run)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" + "---:|" * (len(head) - 1))
    for w in rows:
        cells = [fmt(med(n, w, field), digits) for n in names]
        cells += [ratio(med(n, w, field), med("redis-server", w, field)) for n in ours]
        cells += [ratio(med(n, w, field), med(one, w, field)) for n, one in scaled]
        if field == "server":
            cells += [fmt(med("redis-server", w, "generator"))]
        print(f"| {w} | " + " | ".join(cells) + " |")
    print()
for w in order:
    if med("redis-server", w, "drain_jobs_per_sec"):
        print(f"{w}, drain jobs/s: " + ", ".join(f"{n} {fmt(med(n, w, 'drain_jobs_per_sec'), 0)}" for n in servers))
PY

# Shared helpers for the scripts in Benchmarks/ and scripts/ — source it, don't run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"        # from Benchmarks/
#   source "$(dirname "${BASH_SOURCE[0]}")/../Benchmarks/lib.sh"   # from scripts/
#
#   need_tools redis-server redis-cli python3   # exit 1 naming the first missing tool
#   resolve_damselfly_bin                       # DAMSELFLY_BIN absolute (built when unset)
#   make_workdir                                # WORKDIR=private temp dir; removed (and every
#                                               # server started below stopped) on exit
#   port=$(free_port)
#   start_damselfly "$port" "$WORKDIR/df.log" --proactor_threads=2   # sets SERVER_PID
#   start_redis "$port" "$WORKDIR/redis.log" [extra redis-server args] # sets SERVER_PID
#   start_either damselfly|redis "$log" [damselfly flags]  # free port, waited for: PORT, SERVER_PID
#   wait_ping "$port" name "$log" [seconds]      # exit 1 with the log's tail if no PONG
#   stop_server "$SERVER_PID"
#   cpu_ticks "$SERVER_PID"                     # utime+stime in clock ticks (getconf CLK_TCK)
#   rss_kb "$SERVER_PID"                        # VmRSS in kB
#   cg_start redis|damselfly; cg_measure N ARGS # instructions per request under callgrind
#
# Every server gets a private --dir (and working directory) of its own under WORKDIR, so a
# dump.rdb or journal in the checkout is never loaded or overwritten.

# need_tools TOOL... — every tool must be on PATH.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "error: $tool not found (scripts/install-deps.sh installs it)" >&2
      exit 1
    }
  done
}

# resolve_damselfly_bin — DAMSELFLY_BIN made absolute, or a release build when unset; exits 1
# when it is not executable. Run from the repository root.
resolve_damselfly_bin() {
  if [[ -z "${DAMSELFLY_BIN:-}" ]]; then
    swift build -c release --product damselfly
    DAMSELFLY_BIN=.build/release/damselfly
  fi
  [[ -x "$DAMSELFLY_BIN" ]] || { echo "error: $DAMSELFLY_BIN not executable" >&2; exit 1; }
  DAMSELFLY_BIN=$(realpath "$DAMSELFLY_BIN")
}

# free_port — a TCP port nothing listens on right now (the kernel's pick).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

LIB_SERVER_PIDS=()

# make_workdir — WORKDIR: a private temporary directory, removed on exit together with
# every server started by start_damselfly / start_redis. KEEP_WORKDIR=1 keeps it.
make_workdir() {
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/damselfly-bench.XXXXXX")
  trap lib_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# A script may define on_exit: it runs first, while WORKDIR still exists.
lib_cleanup() {
  local pid
  if declare -F on_exit >/dev/null; then on_exit; fi
  for pid in "${LIB_SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${LIB_SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  LIB_SERVER_PIDS=()
  if [[ -n "${WORKDIR:-}" && "${KEEP_WORKDIR:-0}" != 1 ]]; then rm -rf "$WORKDIR"; fi
}

# server_dir NAME — a fresh directory under WORKDIR for one server's files.
server_dir() {
  mktemp -d "$WORKDIR/$1.XXXXXX"
}

# start_damselfly PORT LOG [FLAGS...] — runs $DAMSELFLY_BIN in the background with a
# private --dir (also its cwd); SERVER_PID is its pid. RUN_PREFIX=(taskset -c 0) runs it
# under a prefix command (both start functions).
start_damselfly() {
  local port=$1 log=$2 dir
  shift 2
  dir=$(server_dir damselfly)
  (cd "$dir" && exec ${RUN_PREFIX[@]+"${RUN_PREFIX[@]}"} "$DAMSELFLY_BIN" --port="$port" --bind=127.0.0.1 \
    --logtostdout --dir="$dir" "$@") >"$log" 2>&1 &
  SERVER_PID=$!
  LIB_SERVER_PIDS+=("$SERVER_PID")
}

# start_redis PORT LOG [ARGS...] — $REDIS_SERVER (default redis-server) without persistence,
# private --dir.
start_redis() {
  local port=$1 log=$2 dir
  shift 2
  dir=$(server_dir redis)
  (cd "$dir" && exec ${RUN_PREFIX[@]+"${RUN_PREFIX[@]}"} "${REDIS_SERVER:-redis-server}" --port "$port" --bind 127.0.0.1 \
    --save '' --appendonly no --dir "$dir" "$@") >"$log" 2>&1 &
  SERVER_PID=$!
  LIB_SERVER_PIDS+=("$SERVER_PID")
}

# start_either KIND LOG [damselfly flags...] — a fresh Damselfly (KIND damselfly, with the
# flags) or redis-server (any other KIND) on a free port, answering: sets PORT and SERVER_PID.
start_either() {
  local kind=$1 log=$2
  shift 2
  PORT=$(free_port)
  if [[ "$kind" == damselfly ]]; then start_damselfly "$PORT" "$log" "$@"; else start_redis "$PORT" "$log"; fi
  wait_ping "$PORT" "$kind" "$log"
}

# wait_ping PORT NAME LOG [SECONDS] — waits for PONG; exits 1 with the log's tail otherwise.
# LIB_CLI_ARGS (an array, e.g. redis-cli's --tls options) goes to redis-cli.
wait_ping() {
  local port=$1 name=$2 log=$3 deadline=$((SECONDS + ${4:-10}))
  while ((SECONDS < deadline)); do
    [[ "$(redis-cli -h 127.0.0.1 -p "$port" ${LIB_CLI_ARGS[@]+"${LIB_CLI_ARGS[@]}"} ping 2>/dev/null)" == PONG ]] && return 0
    sleep 0.05
  done
  echo "error: $name did not answer PING on port $port; log:" >&2
  tail -n 40 "$log" >&2
  exit 1
}

# stop_server PID — SIGTERM, wait (SIGKILL after 10 s).
stop_server() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=()
  for i in "${LIB_SERVER_PIDS[@]}"; do [[ "$i" != "$pid" ]] && kept+=("$i"); done
  LIB_SERVER_PIDS=(${kept[@]+"${kept[@]}"})
}

# cpu_ticks PID — the process's user + system CPU so far, in clock ticks (fields 14 and 15 of
# /proc/PID/stat; divide by `getconf CLK_TCK`). Server CPU per request is the difference
# around a fixed load divided by the requests: steadier than throughput on a shared VM.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# sys_ticks PID — the kernel's part of it (stime).
sys_ticks() { awk '{ print $15 }' "/proc/$1/stat"; }

# rss_kb PID — the process's resident set (VmRSS) in kB.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Instructions per request under callgrind: repeatable on a loaded machine, where CPU time and
# throughput are not. One server at a time, instrumentation on only around each measured load.
#
#   cg_start redis|damselfly [EXTRA FLAGS...]   # sets CG_PID, CG_PORT (WORKDIR must exist)
#   cg_measure N [redis-benchmark ARGS...]      # prints instructions per request of N requests
#   cg_measure_run N COMMAND...                 # the same, N requests sent by COMMAND
#   stop_server "$CG_PID"
#
# Damselfly ($CG_DAMSELFLY_BIN, default $DAMSELFLY_BIN) runs at 1 thread with epoll (valgrind
# does not know io_uring), from a --strip-debug copy (valgrind 3.19 cannot read DWARF 5).
cg_start() {
  local kind=$1 dir
  shift
  need_tools valgrind callgrind_control objcopy redis-benchmark
  CG_OUT="$WORKDIR/cg.$kind.$RANDOM"
  CG_PORT=$(free_port)
  dir=$(server_dir "cg-$kind")
  if [[ "$kind" == redis ]]; then
    (cd "$dir" && exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$CG_OUT" \
      "${REDIS_SERVER:-redis-server}" --port "$CG_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" "$@") \
      >"$CG_OUT.log" 2>&1 &
  else
    local bin=${CG_DAMSELFLY_BIN:-$DAMSELFLY_BIN} copy
    copy="$WORKDIR/damselfly-nodebug.$(cksum <<<"$bin" | cut -d' ' -f1)"
    [[ -x "$copy" ]] || objcopy --strip-debug "$bin" "$copy"
    (cd "$dir" && exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$CG_OUT" \
      "$copy" --port="$CG_PORT" --bind=127.0.0.1 --dir="$dir" --proactor_threads=1 \
      --force_epoll=true "$@") >"$CG_OUT.log" 2>&1 &
  fi
  CG_PID=$!
  LIB_SERVER_PIDS+=("$CG_PID")
  wait_ping "$CG_PORT" "$kind under callgrind" "$CG_OUT.log" 120
  # Valgrind runs one thread at a time, so a hop to another thread can take milliseconds:
  # without this, SLOWLOG would record (and copy the arguments of) commands that are not slow.
  redis-cli -h 127.0.0.1 -p "$CG_PORT" ${LIB_CLI_ARGS[@]+"${LIB_CLI_ARGS[@]}"} CONFIG SET slowlog-log-slower-than -1 >/dev/null
}

# cg_measure N [ARGS...] — redis-benchmark -c CG_CLIENTS (1) -n N ARGS against the server of cg_start with
# instrumentation on, then a dump; prints that dump's instructions divided by N.
cg_measure() {
  local n=$1
  shift
  cg_measure_run "$n" redis-benchmark -h 127.0.0.1 -p "$CG_PORT" -c "${CG_CLIENTS:-1}" -n "$n" "$@"
}

# cg_measure_run N COMMAND... — cg_measure with any load generator: COMMAND sends the N requests.
cg_measure_run() {
  local n=$1 before dump
  shift
  before=$(find "$WORKDIR" -maxdepth 1 -name "$(basename "$CG_OUT").[0-9]*" | wc -l)
  callgrind_control -i on "$CG_PID" >/dev/null 2>&1
  "$@" >/dev/null 2>&1
  callgrind_control -i off "$CG_PID" >/dev/null 2>&1
  callgrind_control -d "$CG_PID" >/dev/null 2>&1
  dump="$CG_OUT.$((before + 1))"
  awk -v n="$n" '/^totals:/ { t += $2 } END { printf "%.0f", t / n }' "$dump"
}

#!/usr/bin/env bash
# Scripting throughput, Damselfly vs redis-server side by side (issue 6's benchmark).
#
#   Benchmarks/script_bench.sh
#
# Three redis-benchmark-driven workloads, each against a fresh server:
#   sched-drain  EVALSHA of Sidekiq 6.4.1's scheduler script (zrangebyscore ... limit 0 1 +
#                zrem) on `schedule`, a 100,000-entry sorted set whose entries are all due:
#                the run pops them one by one (N = 100,000 calls, the set ends empty).
#   sched-idle   the same script on the same 100,000 entries, none due (the poller's
#                common case: an empty range, nothing written).
#   rmw          a small read-modify-write script on one key (GET, +1, SET, return).
#
# Env:
#   N=100000           calls per workload (sched-drain always uses the set's size)
#   CLIENTS=50         parallel connections (-c)
#   ROUNDS=3           rounds; the table shows medians
#   DAMSELFLY_BIN      binary to run (default: build .build/release/damselfly)
#   THREADS=2          Damselfly's --proactor_threads
#   DAMSELFLY_FLAGS    extra flags for Damselfly
#
# Prints a markdown table (requests/s and Damselfly / Redis ratio) and writes it to
# Benchmarks/results/scripts-t$THREADS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

N="${N:-100000}"
CLIENTS="${CLIENTS:-50}"
ROUNDS="${ROUNDS:-3}"
SET_SIZE=100000
THREADS="${THREADS:-2}"

need_tools redis-server redis-benchmark redis-cli python3
resolve_damselfly_bin
make_workdir
workdir=$WORKDIR
server_pid=""

start_server() {  # kind -> sets PORT, server_pid
  PORT=$(free_port)
  if [[ "$1" == damselfly ]]; then
    # shellcheck disable=SC2086 # DAMSELFLY_FLAGS is a list of flags
    start_damselfly "$PORT" "$workdir/server.log" --proactor_threads="$THREADS" ${DAMSELFLY_FLAGS:-}
  else
    start_redis "$PORT" "$workdir/server.log"
  fi
  server_pid=$SERVER_PID
  wait_ping "$PORT" "$1" "$workdir/server.log"
}

# Sidekiq 6.4.1's Scheduled::Enq LUA_ZPOPBYSCORE, byte for byte.
SCHED_SCRIPT='local key, now = KEYS[1], ARGV[1]
local jobs = redis.call("zrangebyscore", key, "-inf", now, "limit", 0, 1)
if jobs[1] then
  redis.call("zrem", key, jobs[1])
  return jobs[1]
end
'
RMW_SCRIPT='local v = tonumber(redis.call("GET", KEYS[1]) or "0")
v = v + 1
redis.call("SET", KEYS[1], v)
return v
'

fill_schedule() {  # port score_base: 100,000 Sidekiq-shaped entries with scores base+i
  python3 - "$1" "$2" "$SET_SIZE" <<'EOF'
import socket, sys
port, base, size = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def cmd(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        p = p if isinstance(p, bytes) else str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)
s = socket.create_connection(("127.0.0.1", port))
batch, sent = [], 0
for i in range(size):
    job = '{"retry":true,"queue":"default","class":"NoopJob","args":[%d],"jid":"%024x","created_at":1700000000.0}' % (i, i)
    batch.append(cmd("ZADD", "schedule", repr(base + i), job))
    if len(batch) == 1000 or i == size - 1:
        s.sendall(b"".join(batch)); sent += len(batch); batch = []
buf = b""
while buf.count(b"\r\n") < sent:
    buf += s.recv(1 << 20)
s.sendall(cmd("ZCARD", "schedule")); card = s.recv(100)
assert card == b":%d\r\n" % size, card
EOF
}

bench_one() {  # port n args... -> requests/s
  redis-benchmark -h 127.0.0.1 -p "$1" -c "$CLIENTS" -n "$2" --csv "${@:3}" 2>/dev/null \
    | awk -F'","' 'NR > 1 { gsub(/"/, "", $2); print $2; exit }'
}

run_workload() {  # kind workload -> requests/s
  start_server "$1"
  local sha
  case "$2" in
    sched-drain|sched-idle)
      if [[ "$2" == sched-drain ]]; then fill_schedule "$PORT" 0; else fill_schedule "$PORT" 4000000000; fi
      sha=$(redis-cli -h 127.0.0.1 -p "$PORT" script load "$SCHED_SCRIPT")
      local n="$N"; [[ "$2" == sched-drain ]] && n="$SET_SIZE"
      bench_one "$PORT" "$n" evalsha "$sha" 1 schedule 3000000000
      if [[ "$2" == sched-drain ]]; then
        local left; left=$(redis-cli -h 127.0.0.1 -p "$PORT" zcard schedule)
        [[ "$left" == 0 ]] || echo "warning: $1 left $left entries in schedule" >&2
      fi ;;
    rmw)
      sha=$(redis-cli -h 127.0.0.1 -p "$PORT" script load "$RMW_SCRIPT")
      bench_one "$PORT" "$N" evalsha "$sha" 1 counter
      local total; total=$(redis-cli -h 127.0.0.1 -p "$PORT" get counter)
      [[ "$total" == "$N" ]] || echo "warning: $1 counter is $total, expected $N" >&2 ;;
  esac
  stop_server "$server_pid"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mkdir -p Benchmarks/results
out=Benchmarks/results/scripts-t$THREADS.md
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(redis-server --version | awk '{print $3}'); damselfly --proactor_threads=$THREADS ${DAMSELFLY_FLAGS:-}; -c $CLIENTS; medians of $ROUNDS rounds"
  echo
  echo "| workload | redis-server req/s | Damselfly req/s | Damselfly / Redis |"
  echo "|----------|-------------------:|----------------:|------------------:|"
} >"$out"
for workload in sched-drain sched-idle rmw; do
  redis_runs=(); df_runs=()
  for _ in $(seq 1 "$ROUNDS"); do
    redis_runs+=("$(run_workload redis "$workload")")
    df_runs+=("$(run_workload damselfly "$workload")")
  done
  r=$(printf '%s\n' "${redis_runs[@]}" | median)
  d=$(printf '%s\n' "${df_runs[@]}" | median)
  ratio=$(python3 -c "print(f'{$d / $r:.2f}')")
  echo "| $workload | $r <sub>(${redis_runs[*]})</sub> | $d <sub>(${df_runs[*]})</sub> | $ratio |" >>"$out"
done
cat "$out"

#!/usr/bin/env bash
# Memory per idle connection, side by side: the RSS growth of Damselfly (1 and 2 threads,
# io_uring, and 2 threads on epoll) and of redis-server when N (default 10,000) clients
# connect, each sends one PING and reads its PONG, and then all sit idle for a few seconds
# (Redis frees an idle client's query buffer after 2 s; both servers get the same wait).
# Prints VmRSS before and after and the bytes per connection.
#
#   Benchmarks/conn_memory.sh
#   N=5000 DAMSELFLY_BIN=.build/release/damselfly Benchmarks/conn_memory.sh
#   BEFORE_BIN=/path/to/older/damselfly Benchmarks/conn_memory.sh   # + rows for an older build
#
# Both the clients (this script's python) and each server need N + a few descriptors: the
# script raises its soft RLIMIT_NOFILE to the hard limit, which the servers inherit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

N=${N:-10000}
IDLE_SECONDS=${IDLE_SECONDS:-3}
need_tools redis-server redis-cli python3
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < N + 200)); then
  echo "error: RLIMIT_NOFILE hard limit $(ulimit -Hn) is below N + 200 = $((N + 200))" >&2
  exit 1
fi
resolve_damselfly_bin
make_workdir

# measure NAME PID PORT — prints one table row.
measure() {
  python3 - "$1" "$2" "$3" "$N" "$IDLE_SECONDS" <<'PY'
import selectors, socket, sys, time
name, pid, port, n, idle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])

def rss():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

time.sleep(1.0)
before = rss()
sel = selectors.DefaultSelector()
socks = []
for i in range(n):
    s = socket.socket()
    s.connect(("127.0.0.1", port))   # blocking connect: the backlog never overflows
    s.setblocking(False)
    s.send(b"*1\r\n$4\r\nPING\r\n")
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
got = 0
deadline = time.monotonic() + 60
while got < n and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=1):
        assert key.fileobj.recv(64) == b"+PONG\r\n"
        sel.unregister(key.fileobj)
        got += 1
assert got == n, f"{name}: {got} of {n} PONGs"
time.sleep(idle)
after = rss()
print(f"| {name} | {before / 1048576:.1f} | {after / 1048576:.1f} | {(after - before) / n:,.0f} |", flush=True)
for s in socks:
    s.close()
PY
}

echo "N=$N idle connections (each sent one PING), ${IDLE_SECONDS} s idle; $(nproc) vCPUs"
echo
echo "| server | RSS before (MiB) | RSS with $N idle (MiB) | bytes per connection |"
echo "|---|---:|---:|---:|"
configs=("this 1 uring" "this 2 uring" "this 2 epoll")
[[ -n "${BEFORE_BIN:-}" ]] && configs+=("before 1 uring" "before 2 uring")
this_bin=$DAMSELFLY_BIN
for config in "${configs[@]}"; do
  read -r build threads engine <<<"$config"
  DAMSELFLY_BIN=$this_bin
  [[ $build == before ]] && DAMSELFLY_BIN=$(realpath "$BEFORE_BIN")
  flags=(--proactor_threads="$threads" --maxclients=$((N + 10)))
  [[ $engine == epoll ]] && flags+=(--force_epoll)
  port=$(free_port)
  start_damselfly "$port" "$WORKDIR/df-$build-$threads-$engine.log" "${flags[@]}"
  wait_ping "$port" damselfly "$WORKDIR/df-$build-$threads-$engine.log"
  label="Damselfly, $threads thread(s), $engine"
  [[ $build == before ]] && label="$label, BEFORE_BIN"
  measure "$label" "$SERVER_PID" "$port"
  stop_server "$SERVER_PID"
done
port=$(free_port)
start_redis "$port" "$WORKDIR/redis.log" --maxclients $((N + 10))
wait_ping "$port" redis-server "$WORKDIR/redis.log"
measure "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')" "$SERVER_PID" "$port"
stop_server "$SERVER_PID"

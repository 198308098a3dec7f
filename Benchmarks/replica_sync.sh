#!/usr/bin/env bash
# Full-sync time of a replica (docs/benchmarks.md, "Replica full sync"): a redis-server
# master holding KEYS string keys (DEBUG POPULATE), then REPLICAOF from
#   redis   — a redis-server replica,
#   damselfly — this build ($DAMSELFLY_BIN) as the replica,
# timed from REPLICAOF until the replica reports master_link_status:up with the
# master's DBSIZE. The master syncs diskless (its default), with no delay.
#
#   Benchmarks/replica_sync.sh          # Env: KEYS [1000000], FLAGS [--proactor_threads=2], ROUNDS [1]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh
need_tools redis-server redis-cli python3
resolve_damselfly_bin
KEYS="${KEYS:-1000000}"; FLAGS="${FLAGS:---proactor_threads=2}"; ROUNDS="${ROUNDS:-1}"
make_workdir

mport=$(free_port)
start_redis "$mport" "$WORKDIR/master.log" --repl-diskless-sync-delay 0 --enable-debug-command yes
MASTER_PID=$SERVER_PID
wait_ping "$mport" master "$WORKDIR/master.log"
redis-cli -p "$mport" DEBUG POPULATE "$KEYS" key 16 >/dev/null
expected=$(redis-cli -p "$mport" DBSIZE)

time_sync() {  # name
  local name=$1 port start
  port=$(free_port)
  if [[ $name == redis ]]; then
    start_redis "$port" "$WORKDIR/$name.log"
  else
    start_damselfly "$port" "$WORKDIR/$name.log" $FLAGS
  fi
  wait_ping "$port" "$name" "$WORKDIR/$name.log"
  start=$(date +%s.%N)
  redis-cli -p "$port" REPLICAOF 127.0.0.1 "$mport" >/dev/null
  until [[ $(redis-cli -p "$port" INFO replication | tr -d '\r' | grep -c '^master_link_status:up') == 1 \
           && $(redis-cli -p "$port" DBSIZE) == "$expected" ]]; do
    sleep 0.05
  done
  python3 -c "print(f'$name replica: full sync of $expected keys in {$(date +%s.%N) - $start:.2f} s, RSS {$(rss_kb "$SERVER_PID") / 1024:.0f} MiB')"
  stop_server "$SERVER_PID"
}

for _ in $(seq 1 "$ROUNDS"); do
  time_sync redis
  time_sync damselfly
done
stop_server "$MASTER_PID"

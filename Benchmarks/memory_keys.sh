#!/usr/bin/env bash
# Memory per string key side by side with redis-server (docs/benchmarks.md "Short keys inline"):
# for each server a fresh one at one thread, DEBUG POPULATE N PREFIX SIZE (keys PREFIX:0 ..
# PREFIX:N-1, values SIZE bytes), then INFO used_memory and VmRSS growth, each divided by N.
#
#   Benchmarks/memory_keys.sh
#   N=1000000 PREFIX=key BASE_BIN=/tmp/before Benchmarks/memory_keys.sh
#
# Env (defaults in brackets): N [1000000], PREFIX [key] (a longer prefix makes keys that do not
#   fit inline), SIZE [32], DAMSELFLY_BIN (default: release build), BASE_BIN (another damselfly
#   binary measured beside it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

N="${N:-1000000}"
PREFIX="${PREFIX:-key}"
SIZE="${SIZE:-32}"

need_tools redis-server redis-cli
resolve_damselfly_bin
make_workdir

# measure NAME — loads the server on PORT/SERVER_PID and prints its row.
measure() {
  local name=$1 rss0 used0 rss1 used1
  rss0=$(rss_kb "$SERVER_PID")
  used0=$(redis-cli -p "$PORT" info memory | awk -F: '/^used_memory:/ { print $2+0 }')
  redis-cli -p "$PORT" debug populate "$N" "$PREFIX" "$SIZE" >/dev/null
  [[ "$(redis-cli -p "$PORT" dbsize)" == "$N" ]] || { echo "error: $name did not populate $N keys" >&2; exit 1; }
  rss1=$(rss_kb "$SERVER_PID")
  used1=$(redis-cli -p "$PORT" info memory | awk -F: '/^used_memory:/ { print $2+0 }')
  awk -v name="$name" -v n="$N" -v u="$((used1 - used0))" -v r="$((rss1 - rss0))" \
    'BEGIN { printf "%-28s used_memory/key %7.1f B   RSS/key %7.1f B\n", name, u / n, r * 1024 / n }'
  stop_server "$SERVER_PID"
}

echo "N=$N keys ${PREFIX}:<i>, values of $SIZE bytes"
log="$WORKDIR/server.log"
PORT=$(free_port); start_redis "$PORT" "$log" --enable-debug-command yes; wait_ping "$PORT" redis "$log"
measure "redis-server $(redis-server --version | grep -o 'v=[0-9.]*')"
if [[ -n "${BASE_BIN:-}" ]]; then
  (DAMSELFLY_BIN=$(realpath "$BASE_BIN"); start_either damselfly "$log" --proactor_threads=1; measure "damselfly (base)")
fi
start_either damselfly "$log" --proactor_threads=1
measure "damselfly"

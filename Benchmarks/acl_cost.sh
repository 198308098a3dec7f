#!/usr/bin/env bash
# Server CPU per request with ACL (docs/benchmarks.md, "ACL cost"): the same load against
#   before  — a binary without ACL ($1, e.g. main's build copied aside),
#   default — this build, as the default user (one flag load per command),
#   restricted — this build, as a user whose rules need the full check
#                (+@all -@dangerous: the command bitmap; ~key:*: a key pattern per key).
#
#   Benchmarks/acl_cost.sh <binary before ACL>      # DAMSELFLY_BIN: the build with ACL
#
# redis-benchmark -c 50 -n $N -r 100000 -t set,get -P 16; server utime+stime from
# /proc/<pid>/stat around each run. Env: N [300000], FLAGS [--proactor_threads=2], ROUNDS [1]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh
need_tools redis-benchmark redis-cli python3
BEFORE=$(realpath "$1")
resolve_damselfly_bin
N="${N:-300000}"; FLAGS="${FLAGS:---proactor_threads=2}"; ROUNDS="${ROUNDS:-1}"
TICK=$(getconf CLK_TCK)
make_workdir

run_case() {  # name binary [redis-benchmark auth args...]
  local name=$1 bin=$2 port before after us t
  shift 2
  port=$(free_port)
  DAMSELFLY_BIN=$bin start_damselfly "$port" "$WORKDIR/$name.log" $FLAGS
  wait_ping "$port" "$name" "$WORKDIR/$name.log"
  redis-cli -p "$port" ACL SETUSER bench on '>benchpw' '+@all' '-@dangerous' '~key:*' '&*' >/dev/null 2>&1 || true
  for t in set get; do
    before=$(cpu_ticks "$SERVER_PID")
    redis-benchmark -p "$port" -c 50 -n "$N" -r 100000 -P 16 -t "$t" -q "$@" >/dev/null
    after=$(cpu_ticks "$SERVER_PID")
    us=$(python3 -c "print(f'{($after-$before)/$TICK*1e6/$N:.3f}')")
    echo "$name ${t^^} P16: $us us of server CPU per request"
  done
  stop_server "$SERVER_PID"
}

for _ in $(seq 1 "$ROUNDS"); do
  run_case before "$BEFORE"
  run_case default "$DAMSELFLY_BIN"
  run_case restricted "$DAMSELFLY_BIN" --user bench -a benchpw
done

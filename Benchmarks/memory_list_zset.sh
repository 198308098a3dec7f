#!/usr/bin/env bash
# Memory side by side: RSS growth of Damselfly and redis-server after loading
# Sidekiq-style job payloads (JSON, about 120 bytes each, every one distinct)
#   list: LPUSH into one list (a Sidekiq queue)
#   zset: ZADD into one sorted set, score = a run-at time (the schedule/retry set)
# and the ratio Damselfly / Redis (target: at most 1.0).
#
#   Benchmarks/memory_list_zset.sh            # both workloads
#   MODE=list Benchmarks/memory_list_zset.sh  # only the list
#
# Env:
#   N=1000000          payloads per workload
#   MODE=list,zset     which workloads (comma-separated)
#   DAMSELFLY_BIN      binary to run (default: build .build/release/damselfly)
#   DAMSELFLY_FLAGS    flags for Damselfly (default --proactor_threads=2)
#
# Each workload starts both servers fresh, warms their connection buffers
# with the same traffic shape that stores nothing (LPUSHX to a missing key:
# otherwise the receive buffers a server touches for the first time, such as
# io_uring's provided buffers, count as data growth), reads VmRSS from /proc,
# loads (pipelined through `redis-cli --pipe`, waiting for the last reply),
# reads VmRSS again, and prints one line per server plus the ratio.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

N="${N:-1000000}"
MODE="${MODE:-list,zset}"
DAMSELFLY_FLAGS="${DAMSELFLY_FLAGS:---proactor_threads=2}"

need_tools redis-server redis-cli python3
resolve_damselfly_bin
make_workdir
workdir=$WORKDIR


# The load as RESP, generated once per workload: distinct payloads such as
# {"class":"HardJob","args":[123456],"retry":true,"queue":"default","jid":"…24 hex…","created_at":1700000123.4}
# (about 125 bytes), plus a warm-up file of LPUSHX commands to a missing key.
gen_load() {  # mode file
  python3 - "$1" "$N" > "$2" <<'EOF'
import sys, random
mode, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
out = sys.stdout.buffer
def frame(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
total = 0
batch = []
for i in range(n):
    jid = "%024x" % rng.getrandbits(96)
    t = 1700000000 + i / 1000.0
    payload = ('{"class":"HardJob","args":[%d],"retry":true,"queue":"default","jid":"%s","created_at":%.1f}'
               % (i, jid, t)).encode()
    total += len(payload)
    if mode == "warmup":
        batch.append(frame(b"LPUSHX", b"no-such-queue", payload))
    elif mode == "list":
        batch.append(frame(b"LPUSH", b"queue:default", payload))
    else:
        batch.append(frame(b"ZADD", b"schedule", b"%.3f" % (t + 3600), payload))
    if len(batch) == 10000:
        out.write(b"".join(batch))
        batch = []
out.write(b"".join(batch))
sys.stderr.write("%.1f\n" % (total / n))
EOF
}

pipe() {  # name port file
  redis-cli -h 127.0.0.1 -p "$2" --pipe < "$3" > "$workdir/pipe-$1.log" 2>&1 || {
    echo "error: loading $1 failed:" >&2; cat "$workdir/pipe-$1.log" >&2; exit 1; }
}

measure() {  # name pid port loadfile -> prints "rss_before rss_after"
  local before after
  pipe "$1" "$3" "$workdir/warmup.resp"
  sleep 1
  before=$(rss_kb "$2")
  pipe "$1" "$3" "$4"
  grep -q "errors: 0" "$workdir/pipe-$1.log" || { echo "error: $1 replied with errors:" >&2; cat "$workdir/pipe-$1.log" >&2; exit 1; }
  sleep 1
  after=$(rss_kb "$2")
  echo "$before $after"
}

run_workload() {  # mode
  local mode=$1 load="$workdir/load-$1.resp" avg
  avg=$(gen_load "$mode" "$load" 2>&1 | tail -1)
  local rport dport
  rport=$(free_port)
  start_redis "$rport" "$workdir/redis-$mode.log"
  local rpid=$SERVER_PID
  dport=$(free_port)
  # shellcheck disable=SC2086
  start_damselfly "$dport" "$workdir/damselfly-$mode.log" $DAMSELFLY_FLAGS
  local dpid=$SERVER_PID
  wait_ping "$rport" redis-server "$workdir/redis-$mode.log"
  wait_ping "$dport" damselfly "$workdir/damselfly-$mode.log"

  local r d
  r=$(measure redis "$rpid" "$rport" "$load")
  d=$(measure damselfly "$dpid" "$dport" "$load")
  local key=queue:default count=LLEN
  [[ "$mode" == zset ]] && { key=schedule; count=ZCARD; }
  local rn dn
  rn=$(redis-cli -h 127.0.0.1 -p "$rport" "$count" "$key")
  dn=$(redis-cli -h 127.0.0.1 -p "$dport" "$count" "$key")
  [[ "$rn" == "$N" && "$dn" == "$N" ]] || { echo "error: $count $key: redis $rn, damselfly $dn (expected $N)" >&2; exit 1; }

  python3 - "$mode" "$N" "$avg" $r $d <<'EOF'
import sys
mode, n, avg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rb, ra, db, da = map(int, sys.argv[4:8])
rg, dg = (ra - rb) * 1024, (da - db) * 1024
print(f"{mode}: {n:,} payloads of {avg} bytes on average")
print(f"  redis-server  RSS {rb/1024:8.1f} -> {ra/1024:8.1f} MiB   growth {rg/2**20:8.1f} MiB  ({rg/n:6.1f} B/item)")
print(f"  damselfly     RSS {db/1024:8.1f} -> {da/1024:8.1f} MiB   growth {dg/2**20:8.1f} MiB  ({dg/n:6.1f} B/item)")
print(f"  ratio damselfly/redis: {dg/rg:.3f}")
EOF
  kill -TERM "$rpid" "$dpid" 2>/dev/null || true
  wait "$rpid" "$dpid" 2>/dev/null || true
  rm -f "$load"
}

N_WARMUP=$(( N < 200000 ? N : 200000 ))
N="$N_WARMUP" gen_load warmup "$workdir/warmup.resp" 2>/dev/null
echo "Damselfly: $DAMSELFLY_BIN $DAMSELFLY_FLAGS; $(redis-server --version | cut -d' ' -f1-3)"
IFS=, read -ra modes <<< "$MODE"
for m in "${modes[@]}"; do
  case "$m" in
    list|zset) run_workload "$m" ;;
    *) echo "error: unknown MODE entry '$m' (list, zset)" >&2; exit 1 ;;
  esac
done

#!/usr/bin/env bash
# GEOSEARCH throughput and server CPU per call, Damselfly vs redis-server (issue 15's benchmark).
#
#   Benchmarks/geo_bench.sh
#
# Each server gets the same 100,000 points (fixed seed, spread over Europe: longitude -10..30,
# latitude 35..60) in one key, then redis-benchmark sends N calls of two queries:
#   near10   GEOSEARCH pts FROMLONLAT 13.4 52.5 BYRADIUS 50 km COUNT 10 ASC   ("ten nearest")
#   box      GEOSEARCH pts FROMLONLAT 2.35 48.85 BYBOX 200 100 km WITHDIST    (~500 members)
# Server CPU is utime+stime from /proc/PID/stat around the run, divided by N.
#
# Env: N=20000 calls per query, CLIENTS=50, THREADS=2 (Damselfly's --proactor_threads),
#      DAMSELFLY_BIN (default: build .build/release/damselfly).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

N="${N:-20000}"
CLIENTS="${CLIENTS:-50}"
THREADS="${THREADS:-2}"

need_tools redis-server redis-benchmark redis-cli python3
resolve_damselfly_bin
make_workdir

fill() {  # port: 100,000 points in `pts`, 500 per GEOADD
  python3 - "$1" <<'EOF'
import random, socket, sys
rng = random.Random(15)
def cmd(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        p = str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
calls = 0
for batch in range(200):
    args = []
    for i in range(500):
        args += [repr(rng.uniform(-10, 30)), repr(rng.uniform(35, 60)), "p%d" % (batch * 500 + i)]
    s.sendall(cmd("GEOADD", "pts", *args))
    calls += 1
buf = b""
while buf.count(b"\r\n") < calls:
    buf += s.recv(65536)
EOF
}


declare -A RPS CPU
run() {  # kind
  local port log pid name before after rps
  port=$(free_port)
  log="$WORKDIR/$1.log"
  if [[ $1 == damselfly ]]; then
    start_damselfly "$port" "$log" --proactor_threads="$THREADS"
  else
    start_redis "$port" "$log"
  fi
  pid=$SERVER_PID
  wait_ping "$port" "$1" "$log"
  fill "$port"
  [[ $(redis-cli -p "$port" zcard pts) == 100000 ]] || { echo "error: fill failed on $1" >&2; exit 1; }
  for name in near10 box; do
    local query
    if [[ $name == near10 ]]; then query=(GEOSEARCH pts FROMLONLAT 13.4 52.5 BYRADIUS 50 km COUNT 10 ASC)
    else query=(GEOSEARCH pts FROMLONLAT 2.35 48.85 BYBOX 200 100 km WITHDIST); fi
    before=$(cpu_ticks "$pid")
    rps=$(redis-benchmark -p "$port" -c "$CLIENTS" -n "$N" -q "${query[@]}" | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
    after=$(cpu_ticks "$pid")
    RPS[$1-$name]=$rps
    CPU[$1-$name]=$(python3 -c "print(round(($after - $before) * 1e6 / $(getconf CLK_TCK) / $N, 1))")
  done
  stop_server "$pid"
}

run redis
run damselfly
echo "| query | redis-server req/s | Damselfly req/s (--proactor_threads=$THREADS) | redis CPU µs/call | Damselfly CPU µs/call |"
echo "|---|---|---|---|---|"
for name in near10 box; do
  echo "| $name | ${RPS[redis-$name]} | ${RPS[damselfly-$name]} | ${CPU[redis-$name]} | ${CPU[damselfly-$name]} |"
done

#!/usr/bin/env bash
# Streams, Damselfly vs redis-server side by side (issue 14's benchmark).
#
#   Benchmarks/stream_bench.sh                 # xadd, drain and memory
#   MODE=xadd,drain Benchmarks/stream_bench.sh # leave out the 1M-entry memory case
#
# Workloads, each against a fresh server (redis-server, then Damselfly at each of THREADS):
#   xadd    redis-benchmark sends XADD of a 5-field job-like record (`*` IDs, a random
#           jid) with -c CLIENTS, at P1 and P16: requests/s, and the server's CPU per entry
#           (utime + stime from /proc/<pid>/stat before and after, divided by the entries).
#   drain   STREAMS streams filled with N_DRAIN records in all (pipelined), one group each;
#           CONSUMERS Python consumers (raw sockets, one process each, consumer k on stream
#           k % STREAMS) loop XREADGROUP COUNT 10 `>` and XACK the batch they got (the XACK
#           of one batch goes out in the same write as the next XREADGROUP), until their
#           stream is drained: jobs/s over the wall time, CPU per job; every entry must be
#           delivered once and nothing left pending.
#   memory  N_MEM records pipelined by XADD with explicit IDs into one stream: RSS growth
#           (VmRSS before / after; both servers first see the same traffic shape storing
#           nothing, XADD NOMKSTREAM to a missing key, so buffers touched for the first
#           time do not count as data) and the ratio Damselfly / Redis (target at most 1.0).
#           Damselfly runs at the first of THREADS.
#
# Env: N_XADD=200000, CLIENTS=50, N_DRAIN=200000, STREAMS=4, CONSUMERS=4, N_MEM=1000000,
#      THREADS="1 2", MODE=xadd,drain,memory, DAMSELFLY_BIN (default: a release build),
#      DAMSELFLY_FLAGS (extra flags).
#
# Prints markdown tables; one run, no medians (the numbers move on a shared machine).
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
MODE="${MODE:-xadd,drain,memory}"

need_tools redis-server redis-benchmark redis-cli python3
resolve_damselfly_bin
make_workdir
workdir=$WORKDIR
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# start_server KIND THREADS -> PORT, PID
start_server() {
  PORT=$(free_port)
  if [[ "$1" == damselfly ]]; then
    # shellcheck disable=SC2086 # DAMSELFLY_FLAGS is a list of flags
    start_damselfly "$PORT" "$workdir/server.log" --proactor_threads="$2" ${DAMSELFLY_FLAGS:-}
  else
    start_redis "$PORT" "$workdir/server.log"
  fi
  PID=$SERVER_PID
  wait_ping "$PORT" "$1" "$workdir/server.log"
}

# cpu_ticks PID: utime + stime of the whole process (fields 14 and 15 of /proc/PID/stat;
# the command name in field 2 has no spaces here).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

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

DRAIN_PY='
import os, socket, sys, time
port, key, consumer = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode()

def frame(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

class Reader:
    def __init__(self, sock):
        self.s, self.buf, self.at = sock, b"", 0
    def line(self):
        while True:
            i = self.buf.find(b"\r\n", self.at)
            if i >= 0:
                l = self.buf[self.at:i]
                self.at = i + 2
                return l
            self.buf, self.at = self.buf[self.at:] + self.s.recv(1 << 16), 0
    def bulk(self, n):
        while len(self.buf) - self.at < n + 2:
            self.buf, self.at = self.buf[self.at:] + self.s.recv(1 << 16), 0
        b = self.buf[self.at:self.at + n]
        self.at += n + 2
        return b
    def reply(self):
        l = self.line()
        t = l[:1]
        if t == b"*":
            n = int(l[1:])
            return None if n < 0 else [self.reply() for _ in range(n)]
        if t == b"$":
            n = int(l[1:])
            return None if n < 0 else self.bulk(n)
        if t == b":":
            return int(l[1:])
        if t == b"-":
            raise SystemExit("error reply: %r" % l)
        return l[1:]

s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
r = Reader(s)
read = frame(b"XREADGROUP", b"GROUP", b"g", consumer, b"COUNT", b"10", b"STREAMS", key, b">")
got, acked, pending = 0, 0, []
while True:
    if pending:
        s.sendall(frame(b"XACK", key, b"g", *pending) + read)
        acked += r.reply()
    else:
        s.sendall(read)
    rep = r.reply()
    if rep is None:
        break
    pending = [e[0] for e in rep[0][1]]
    got += len(pending)
print(got, acked)
'

# drain_run -> "jobs/s cpu_us_per_job"
drain_run() {
  local per=$((N_DRAIN / STREAMS)) k before after t0 t1 total=0 got acked
  cli flushall >/dev/null
  for ((k = 0; k < STREAMS; k++)); do
    python3 - "$k" "$per" >"$workdir/fill.resp" <<'EOF'
import sys
k, n = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
def frame(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
for i in range(n):
    out.write(frame(b"XADD", b"jobs:%d" % k, b"*", b"class", b"HardJob", b"queue", b"default",
                    b"args", b"[%d]" % i, b"jid", b"%024x" % (k * n + i), b"created_at", b"1700000000.5"))
out.write(frame(b"XGROUP", b"CREATE", b"jobs:%d" % k, b"g", b"0"))
EOF
    redis-cli -h 127.0.0.1 -p "$PORT" --pipe <"$workdir/fill.resp" >"$workdir/fill.log" 2>&1
    grep -q "errors: 0" "$workdir/fill.log" || { echo "error: filling jobs:$k:" >&2; cat "$workdir/fill.log" >&2; exit 1; }
  done
  before=$(cpu_ticks "$PID")
  t0=$(date +%s.%N)
  local pids=()
  for ((k = 0; k < CONSUMERS; k++)); do
    python3 -c "$DRAIN_PY" "$PORT" "jobs:$((k % STREAMS))" "c$k" >"$workdir/consumer-$k.out" &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k"; done
  t1=$(date +%s.%N)
  after=$(cpu_ticks "$PID")
  for ((k = 0; k < CONSUMERS; k++)); do
    read -r got acked <"$workdir/consumer-$k.out"
    [[ "$got" == "$acked" ]] || { echo "error: consumer $k got $got, acked $acked" >&2; exit 1; }
    total=$((total + got))
  done
  [[ "$total" == $((per * STREAMS)) ]] || { echo "error: consumers got $total of $((per * STREAMS))" >&2; exit 1; }
  for ((k = 0; k < STREAMS; k++)); do
    [[ "$(cli xpending "jobs:$k" g | head -1)" == 0 ]] || { echo "error: jobs:$k has pending entries" >&2; exit 1; }
  done
  python3 -c "print(f'{$total / ($t1 - $t0):.0f}', f'{($after - $before) * $TICK_US / $total:.2f}')"
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

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

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

# MARK: - Running

IFS=, read -ra modes <<<"$MODE"
has() { [[ " ${modes[*]} " == *" $1 "* ]]; }
servers=("redis 0")
for t in $THREADS; do servers+=("damselfly $t"); done
declare -A result
for s in "${servers[@]}"; do
  read -r kind threads <<<"$s"
  start_server "$kind" "$threads"
  if has xadd; then
    result[$s,p1]=$(xadd_run 1)
    result[$s,p16]=$(xadd_run 16)
  fi
  if has drain; then result[$s,drain]=$(drain_run); fi
  stop_server "$PID"
done
label() { [[ "$1" == "redis 0" ]] && echo "redis-server" || echo "Damselfly, ${1#damselfly } thread(s)"; }

echo "Damselfly: $DAMSELFLY_BIN ${DAMSELFLY_FLAGS:-}; $(redis-server --version | cut -d' ' -f1-3); $(nproc) vCPUs"
if has xadd; then
  echo
  echo "XADD of a 5-field record, $N_XADD entries, -c $CLIENTS:"
  echo
  echo "| server | P1 XADD/s | P1 CPU µs/entry | P16 XADD/s | P16 CPU µs/entry |"
  echo "|---|---:|---:|---:|---:|"
  for s in "${servers[@]}"; do
    read -r p1 c1 <<<"${result[$s,p1]}"
    read -r p16 c16 <<<"${result[$s,p16]}"
    echo "| $(label "$s") | $p1 | $c1 | $p16 | $c16 |"
  done
fi
if has drain; then
  echo
  echo "Consumer-group drain, $N_DRAIN entries over $STREAMS streams, $CONSUMERS consumers (XREADGROUP COUNT 10 + XACK):"
  echo
  echo "| server | jobs/s | CPU µs/job |"
  echo "|---|---:|---:|"
  for s in "${servers[@]}"; do
    read -r jps cpj <<<"${result[$s,drain]}"
    echo "| $(label "$s") | $jps | $cpj |"
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

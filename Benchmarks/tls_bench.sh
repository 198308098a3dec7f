#!/usr/bin/env bash
# TLS side by side with redis-server's TLS build (issue 18; docs/benchmarks.md, "TLS"):
# redis-benchmark --tls against Damselfly's --tls_port and redis-server's tls-port, and the
# same load in plaintext against both, in one run. Reports requests/s and server CPU per
# request (utime+stime from /proc/<pid>/stat around each run), medians over ROUNDS
# alternating rounds.
#
#   Benchmarks/tls_bench.sh             # DAMSELFLY_BIN: the build to measure
#
# Env: N [200000], ROUNDS [3], FLAGS [--proactor_threads=2] (Damselfly), PIPES ["1 16"].
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh
need_tools redis-benchmark redis-cli redis-server openssl python3
resolve_damselfly_bin
N="${N:-200000}"; ROUNDS="${ROUNDS:-3}"; FLAGS="${FLAGS:---proactor_threads=2}"; PIPES="${PIPES:-1 16}"
TICK=$(getconf CLK_TCK)
make_workdir

# A CA and a server certificate (clients authenticate with the same one).
certs="$WORKDIR/certs"; mkdir -p "$certs"
(cd "$certs" &&
  openssl req -x509 -new -nodes -newkey rsa:2048 -keyout ca.key -out ca.crt -days 2 -subj /CN=bench-ca &&
  openssl req -new -nodes -newkey rsa:2048 -keyout server.key -out server.csr -subj /CN=127.0.0.1 &&
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2) >/dev/null 2>&1
cli_tls=(--tls --cacert "$certs/ca.crt" --cert "$certs/server.crt" --key "$certs/server.key")

df_port=$(free_port); df_tls=$(free_port)
start_damselfly "$df_port" "$WORKDIR/df.log" $FLAGS "--tls_port=$df_tls" "--tls_cert_file=$certs/server.crt" \
  "--tls_key_file=$certs/server.key" "--tls_ca_cert_file=$certs/ca.crt"
df_pid=$SERVER_PID
wait_ping "$df_port" damselfly "$WORKDIR/df.log"
rd_port=$(free_port); rd_tls=$(free_port)
start_redis "$rd_port" "$WORKDIR/redis.log" --tls-port "$rd_tls" --tls-cert-file "$certs/server.crt" \
  --tls-key-file "$certs/server.key" --tls-ca-cert-file "$certs/ca.crt"
rd_pid=$SERVER_PID
wait_ping "$rd_port" redis-server "$WORKDIR/redis.log"

run() {  # pid port test pipeline [tls args] -> "rps us_per_request"
  local pid=$1 port=$2 t=$3 p=$4 before after out
  shift 4
  before=$(cpu_ticks "$pid")
  out=$(redis-benchmark -p "$port" "$@" -c 50 -n "$N" -r 100000 -d 32 -P "$p" -t "$t" -q 2>/dev/null | tr '\r' '\n' | grep -a "requests per second" | tail -1)
  after=$(cpu_ticks "$pid")
  python3 -c "import re,sys; m=re.search(r'([0-9.]+) requests per second', sys.argv[1]); print(f'{float(m.group(1)):.0f} {($after-$before)/$TICK*1e6/$N:.2f}')" "$out"
}

declare -A R
for round in $(seq 1 "$ROUNDS"); do
  for p in $PIPES; do
    for t in set get; do
      R[df-plain-$t-$p]+="$(run "$df_pid" "$df_port" "$t" "$p");"
      R[rd-plain-$t-$p]+="$(run "$rd_pid" "$rd_port" "$t" "$p");"
      R[df-tls-$t-$p]+="$(run "$df_pid" "$df_tls" "$t" "$p" "${cli_tls[@]}");"
      R[rd-tls-$t-$p]+="$(run "$rd_pid" "$rd_tls" "$t" "$p" "${cli_tls[@]}");"
    done
  done
  echo "round $round done" >&2
done

echo "| workload | Damselfly req/s | redis-server req/s | Damselfly µs CPU/req | redis-server µs CPU/req | CPU ratio |"
echo "|---|---:|---:|---:|---:|---:|"
for mode in plain tls; do
  for p in $PIPES; do
    for t in set get; do
      python3 - "${t^^} P$p $mode" "${R[df-$mode-$t-$p]}" "${R[rd-$mode-$t-$p]}" <<'PY'
import statistics, sys
name, a, b = sys.argv[1:]
def med(s, i): return statistics.median(float(x.split()[i]) for x in s.split(";") if x.strip())
print(f"| {name} | {med(a,0):,.0f} | {med(b,0):,.0f} | {med(a,1):.2f} | {med(b,1):.2f} | {med(a,1)/med(b,1):.2f} |")
PY
    done
  done
done

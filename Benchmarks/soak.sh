#!/usr/bin/env bash
# Sidekiq-shaped soak (issue 20): idle BRPOP processors, push bursts, reconnect churn, the
# scheduler's script, MULTI/EXEC heartbeats; RSS sampled into a CSV and its slope after warm-up
# checked against a bound. The driver is Benchmarks/soak.py (plain asyncio, no client library);
# every flag after the script's name goes to it (see `Benchmarks/soak.sh --help`).
#
#   Benchmarks/soak.sh                                   # 60 s, Damselfly and redis-server side by side
#   Benchmarks/soak.sh --seconds 3600 --out Benchmarks/results/soak-hour   # the hour run
#   Benchmarks/soak.sh --no-damselfly --no-redis --port 6379   # a server already running (RSS via INFO's pid)
#
# Env: DAMSELFLY_BIN (default .build/release/damselfly, built when missing), THREADS [2].
# Without --no-damselfly the script starts Damselfly itself, in its own temporary --dir;
# without --no-redis it adds --against-redis (a redis-server, also in its own --dir).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v python3 >/dev/null || { echo "error: python3 not found" >&2; exit 2; }

with_damselfly=1 with_redis=1 pass=()
for a in "$@"; do
  case "$a" in
    --no-damselfly) with_damselfly=0 ;;
    --no-redis) with_redis=0 ;;
    -h|--help) exec python3 Benchmarks/soak.py --help ;;
    *) pass+=("$a") ;;
  esac
done

args=()
if (( with_damselfly )); then
  bin="${DAMSELFLY_BIN:-.build/release/damselfly}"
  if [[ ! -x "$bin" ]]; then
    echo "building $bin ..." >&2
    swift build -c release --product damselfly >&2
  fi
  args+=(--damselfly-bin "$bin" --threads "${THREADS:-2}")
fi
if (( with_redis )); then
  command -v redis-server >/dev/null || { echo "error: redis-server not found (or pass --no-redis)" >&2; exit 2; }
  args+=(--against-redis)
fi
# The plot needs matplotlib: compare.sh's private virtualenv when it exists (nothing is
# installed here; without it the PNG is skipped and the CSVs are written as always).
py=python3
if [[ -x .build-bench/plotenv/bin/python ]] && .build-bench/plotenv/bin/python -c 'import matplotlib' 2>/dev/null; then
  py=.build-bench/plotenv/bin/python
fi
exec "$py" Benchmarks/soak.py "${args[@]}" "${pass[@]}"

#!/usr/bin/env bash
# Harness self-test shim: accepts Damselfly's Dragonfly-style flags and execs a
# real redis-server with the equivalent options, so the e2e suite (and
# Benchmarks/bench_vs_redis.sh) can be validated against Redis itself:
#
#   DAMSELFLY_BIN=tests/e2e/redis_as_damselfly.sh python3 -m pytest tests/e2e -q
#
# Damselfly-only checks (thread_count, transaction counters, ...) detect this
# shim by name and skip themselves.
set -euo pipefail
args=(--save "" --appendonly no)
for a in "$@"; do
  case "$a" in
    --port=*)        args+=(--port "${a#*=}") ;;
    --bind=*)        args+=(--bind "${a#*=}") ;;
    --requirepass=*) args+=(--requirepass "${a#*=}") ;;
    --maxmemory=*)   args+=(--maxmemory "${a#*=}") ;;
    --dbnum=*)       args+=(--databases "${a#*=}") ;;
    --lua_time_limit=*) args+=(--lua-time-limit "${a#*=}") ;;
    --dir=*)         args+=(--dir "${a#*=}") ;;
    --proactor_threads=*|--num_shards=*|--force_epoll|--force_epoll=*|--mem_release_interval=*|--logtostdout) ;;
    *) echo "redis_as_damselfly.sh: unknown flag $a" >&2; exit 2 ;;
  esac
done
exec redis-server "${args[@]}"

#!/usr/bin/env bash
# Memory side by side for one sorted set: RSS growth of Damselfly and
# redis-server after ZADDing N (default 1,000,000) distinct Sidekiq-style job
# payloads of about 120 bytes, scored by run-at timestamps (the schedule /
# retry set), and the ratio Damselfly / Redis.
#
#   Benchmarks/memory_zset.sh
#   N=200000 DAMSELFLY_BIN=.build/release/damselfly Benchmarks/memory_zset.sh
#
# The measurement itself (fresh servers, warm-up, VmRSS before and after a
# `redis-cli --pipe` load) is shared with the list workload in
# memory_list_zset.sh; this runs only its zset part. Same environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODE=zset exec Benchmarks/memory_list_zset.sh "$@"

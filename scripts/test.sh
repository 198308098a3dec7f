#!/usr/bin/env bash
# The project's one test command: release build, Swift unit tests, end-to-end tests.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -k differential # extra arguments go to pytest
#
# Env: DAMSELFLY_BIN overrides the binary the e2e tests start (default: the
# freshly built .build/release/damselfly). SKIP_BUILD=1 / SKIP_UNIT=1 / SKIP_FUZZ=1 /
# SKIP_REDIS_SUITE=1 skip steps; FUZZ_SECONDS sets the libFuzzer run's length (60). The
# libFuzzer and Redis-suite steps run only without extra arguments. The last step runs Redis's own test suite
# (scripts/redis-suite.sh) and fails on a unit below its floor; when the suite
# cannot be obtained (no apt access) it is skipped with a warning, except in CI
# (CI=1), where that is an error. UNIT_TIMEOUT_S (900) bounds the unit tests' run
# and E2E_TEST_TIMEOUT_S (900) each end-to-end test: a hang prints every thread's
# stack (gdb; pytest-timeout) and fails the run instead of stalling CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
start=$SECONDS

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  step "swift build -c release (damselfly, damselfly-bench, damselfly-jobs)"
  swift build -c release --product damselfly
  swift build -c release --product damselfly-bench
  swift build -c release --product damselfly-jobs
fi

# Runs the built unit tests under a time limit; past it, every thread of the
# test process is printed (gdb) and the step fails.
unit_tests_with_watchdog() {
  local limit="${UNIT_TIMEOUT_S:-900}" pid t=0
  swift test --skip-build &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( ++t > limit )); then
      echo "error: the unit tests ran past ${limit} s; every thread of the test process:" >&2
      for p in $(pgrep -f 'PackageTests\.xctest' || true); do
        if command -v gdb >/dev/null; then
          gdb -p "$p" -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^(Thread|#)' >&2 || true
        fi
        kill -9 "$p" 2>/dev/null || true
      done
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 1
    fi
  done
  wait "$pid"
}

if [[ "${SKIP_UNIT:-0}" != 1 ]]; then
  step "swift test (unit tests, at most ${UNIT_TIMEOUT_S:-900} s)"
  swift build --build-tests
  unit_tests_with_watchdog
fi

# Bounded libFuzzer run of the RESP parser and reply decoder; a finding fails the script.
if [[ "${SKIP_FUZZ:-0}" != 1 && $# -eq 0 ]]; then
  step "libFuzzer: RESP parser and reply decoder, ${FUZZ_SECONDS:-60} s (scripts/fuzz-resp.sh)"
  scripts/fuzz-resp.sh "${FUZZ_SECONDS:-60}"
fi

export DAMSELFLY_BIN="${DAMSELFLY_BIN:-.build/release/damselfly}"
export DAMSELFLY_BENCH_BIN="${DAMSELFLY_BENCH_BIN:-.build/release/damselfly-bench}"
export DAMSELFLY_JOBS_BIN="${DAMSELFLY_JOBS_BIN:-.build/release/damselfly-jobs}"
step "end-to-end tests against $DAMSELFLY_BIN"
if [[ ! -x "$DAMSELFLY_BIN" && "$DAMSELFLY_BIN" == */* ]]; then
  echo "error: $DAMSELFLY_BIN is missing or not executable" >&2
  exit 1
fi
# CI=1 turns a missing binary into failures instead of skips.
timeout_args=()
if python3 -c 'import pytest_timeout' 2>/dev/null; then
  timeout_args=(--timeout="${E2E_TEST_TIMEOUT_S:-900}" --timeout-method=thread)
fi
CI="${CI:-1}" python3 -m pytest tests/e2e -q -s -rfEs -p no:cacheprovider "${timeout_args[@]}" "$@"

if [[ "${SKIP_REDIS_SUITE:-0}" != 1 && $# -eq 0 ]]; then
  step "Redis 7.0.15's test suite against $DAMSELFLY_BIN (floors: tests/redis-suite/floors.txt)"
  rc=0
  scripts/redis-suite.sh || rc=$?
  if ((rc == 77)) && [[ -z "${CI:-}" ]]; then
    echo "warning: Redis's test suite could not be obtained; skipped" >&2
  elif ((rc != 0)); then
    exit "$rc"
  fi
fi

step "all tests passed in $((SECONDS - start)) s"

#!/usr/bin/env bash
# Unit tests under ThreadSanitizer or AddressSanitizer (results: docs/reliability.md,
# "libFuzzer and sanitizers").
#
#   scripts/sanitizers.sh thread          # TSan, scratch path .build-tsan
#   scripts/sanitizers.sh address         # ASan, scratch path .build-asan
#   scripts/sanitizers.sh thread 'Regex'  # another --filter (default below; SANITIZER_SKIP: --skip)
#
# A sanitized debug build of the test bundle takes 20-40 min on a loaded 2-core machine, so
# the build is separate and incremental (its own scratch path, never .build). Only the test
# bundle and what it links are built, not the executables (no Hummingbird/NIO).
# Any sanitizer report fails the run (halt_on_error), as does a failing test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kind="${1:-thread}"
case "$kind" in
  thread) scratch=.build-tsan ;;
  address) scratch=.build-asan ;;
  *) echo "usage: $0 thread|address [filter]" >&2; exit 2 ;;
esac

# The runtime (event loop, MPSC queue, socket detach), transactions and blocking commands
# (cross-shard hops, BlockingTable), storage, the RESP parser, persistence, ACL and the server's
# configuration/metrics tests: 370 of the 403 tests. Left out: DamselflyJobsTests (the Sidekiq
# runner, not the server).
filter="${2:-${SANITIZER_FILTER:-DamselflyRuntimeTests|DamselflyStorageTests|DamselflyRESPTests|DamselflyCommandsTests|DamselflyPersistenceTests|DamselflyACLTests|DamselflyServerTests}}"
# Skipped: multiShardWritesAreNeverSeenHalfDone asserts a throughput floor (more than 50 MSETs
# and 50 MGETs in 1.5 s) that TSan's slowdown on a loaded 2-vCPU VM cannot meet (21 and 31);
# its body still ran under TSan there without a report (docs/reliability.md).
skip="${SANITIZER_SKIP:-multiShardWritesAreNeverSeenHalfDone}"

# No SwiftPM network access needed: reuse the main build's package checkouts.
if [[ ! -d "$scratch/checkouts" && -d .build/checkouts ]]; then
  mkdir -p "$scratch"
  cp -r .build/checkouts "$scratch/"
  [[ -f .build/workspace-state.json ]] && cp .build/workspace-state.json "$scratch/"
fi

start=$SECONDS
swift build --product DamselflyPackageTests --sanitize="$kind" --scratch-path "$scratch"
echo "sanitizers: $kind build took $((SECONDS - start)) s"

# halt_on_error: the first report fails the run. second_deadlock_stack: full lock-order reports.
# The Swift runtime's crash handler is off so that the sanitizer's own report is printed.
export SWIFT_BACKTRACE=enable=no
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 suppressions=$PWD/scripts/tsan.supp ${TSAN_OPTIONS:-}"
# Leak checking is off by default: stopped test event loops are reported (docs/reliability.md,
# not yet resolved); ASAN_OPTIONS=detect_leaks=1 shows them.
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=0 detect_stack_use_after_return=0 ${ASAN_OPTIONS:-}"
start=$SECONDS
swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" --filter "$filter" --skip "$skip"
echo "sanitizers: $kind tests passed in $((SECONDS - start)) s"

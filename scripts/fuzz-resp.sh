#!/usr/bin/env bash
# libFuzzer run of the RESP request parser and reply decoder (Fuzz/RESPParser/FuzzRESP.swift).
#
#   scripts/fuzz-resp.sh [seconds]    # default 60
#
# Builds the DamselflyRESP sources and the harness as one module with
# `-sanitize=fuzzer,address` into .build-fuzz/, then fuzzes from a copy of the seed corpus
# (Fuzz/RESPParser/corpus/, read-only here: new inputs go to .build-fuzz/corpus). A crash or a
# failed property writes the input to .build-fuzz/artifacts/ and makes the script fail.
# Env: FUZZ_ARGS (extra libFuzzer flags, e.g. -jobs=2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
out=.build-fuzz
mkdir -p "$out/corpus" "$out/artifacts"

# Optimised like the release build (-O keeps Swift's checks: a missed one is a trap the
# fuzzer reports). -g for readable stacks. Rebuilt only when a source is newer than the binary.
sources=(Sources/DamselflyRESP/*.swift Fuzz/RESPParser/FuzzRESP.swift)
if [[ ! -x "$out/fuzz-resp" || -n "$(find "${sources[@]}" scripts/fuzz-resp.sh -newer "$out/fuzz-resp" -print -quit)" ]]; then
  rm -f "$out/fuzz-resp"
  swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name DamselflyRESP \
    "${sources[@]}" -o "$out/fuzz-resp" 2>&1 | grep -v "Cannot export local symbol" || true
  [[ -x "$out/fuzz-resp" ]] || { echo "fuzz-resp: build failed" >&2; exit 1; }
fi

# Inputs under 64 KiB: the parser's "too big" errors depend on how much was buffered, which
# the harness's chunking-invariance property cannot allow (the unit tests cover them).
# SWIFT_BACKTRACE=enable=no: Swift's own crash handler and ASan's fight over a crash (the
# handler's memory reader trips ASan and the report is lost); ASan's report is the useful one.
rc=0
SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64}" \
  "$out/fuzz-resp" -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$out/artifacts/" ${FUZZ_ARGS:-} \
  "$out/corpus" Fuzz/RESPParser/corpus > "$out/fuzz.log" 2>&1 || rc=$?
grep -E '^(stat::|#[0-9]+ +DONE|Done [0-9]+ runs)' "$out/fuzz.log" || true
if ((rc != 0)); then
  tail -n 60 "$out/fuzz.log" >&2
  echo "fuzz-resp: libFuzzer failed (exit $rc); inputs in $out/artifacts/, log $out/fuzz.log" >&2
  exit "$rc"
fi
echo "fuzz-resp: ${seconds} s without a finding (log $out/fuzz.log)"

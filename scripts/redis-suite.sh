#!/usr/bin/env bash
# Redis 7.0.15's own Tcl test suite against Damselfly, one unit at a time (issue 12).
#
#   scripts/redis-suite.sh                      # every unit in UNITS against .build/release/damselfly
#   scripts/redis-suite.sh --against-redis      # the same against redis-server: records Redis's counts
#   scripts/redis-suite.sh --update-docs        # also regenerate docs/compatibility.md's table
#   scripts/redis-suite.sh --docs-only          # only regenerate it, from the last run's results
#   scripts/redis-suite.sh unit/type/list ...   # only these units (floors checked for them only)
#   scripts/redis-suite.sh --wide ...           # the wide profile (below): its own files and table
#
# The suite comes from Debian's `redis` source package (a deb-src entry is added for the
# Debian archive the machine already uses), downloaded and unpacked into the git-ignored
# .cache/redis-src/; nothing of Redis's code is in this repository. Needs dpkg-dev and tcl
# (installed here when missing, and by scripts/install-deps.sh).
#
# Every unit gets a fresh server (encoding settings leak between units) with a private
# --dir, runs in external mode with the profile below, and is killed after UNIT_CAP_S
# seconds ("hung"). Per unit it prints the passed and failed counts and one of:
# ok, err (some tests failed), exception (the unit aborted), hung, server died.
#
# Floors: tests/redis-suite/floors.txt holds "unit floor [# reason]" lines (Damselfly's pass
# counts); a unit below its floor makes the script exit 1. Raise floors as fixes land; never
# lower one without a reason beside it. Redis's own counts: tests/redis-suite/redis-7.0.15.txt.
#
# --wide (issue 12's next step): the profile with the DEBUG, PFDEBUG, maxmemory, SAVE, RESET,
# LATENCY and CONFIG RESETSTAT tests let in, and digests checked (Redis's own CI external
# profile less what needs a local process or replication). It keeps to its own files: results-*-wide.tsv, failures-*-wide.txt,
# tests/redis-suite/redis-7.0.15-wide.txt, tests/redis-suite/floors-wide.txt and the
# "redis-suite-wide" block of docs/compatibility.md; the default profile's are untouched.
#
# Exit: 0 all floors met; 1 a floor breached (or a unit missing its floor); 77 the suite
# could not be obtained (no apt access); 2 usage or set-up errors.
#
# Env: DAMSELFLY_BIN (default .build/release/damselfly), DAMSELFLY_FLAGS (extra flags), REDIS_SUITE_ALLOW,
# UNIT_CAP_S (default 120), REDIS_SUITE_CACHE (default .cache/redis-src). REDIS_SUITE_TLS=1 runs the
# units over TLS (runtest --tls, the suite's own certificates from its utils/gen-test-certs.sh;
# the server's client port speaks TLS): a trial, not the floors' profile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

REDIS_VERSION=7.0.15
CACHE="${REDIS_SUITE_CACHE:-.cache/redis-src}"
UNIT_CAP_S="${UNIT_CAP_S:-120}"
DOC=docs/compatibility.md
wide=0
for arg in "$@"; do [[ "$arg" == --wide ]] && wide=1; done
if ((wide)); then
  FLOORS=tests/redis-suite/floors-wide.txt
  REDIS_COUNTS=tests/redis-suite/redis-$REDIS_VERSION-wide.txt
  profile_suffix=-wide
  DOC_BLOCK=redis-suite-wide
else
  FLOORS=tests/redis-suite/floors.txt
  REDIS_COUNTS=tests/redis-suite/redis-$REDIS_VERSION.txt
  profile_suffix=""
  DOC_BLOCK=redis-suite
fi

# The profile: external mode cannot run what needs a local process, replication or DEBUG.
TAGS="-slow -needs:repl -needs:debug -needs:pfdebug -needs:config-maxmemory -needs:config-resetstat"
TAGS+=" -needs:reset -needs:save -needs:latency -needs:local-process -large-memory"
# The wide profile lets in the tags whose features Damselfly now has (issue 15).
# redis-server then runs as Redis's own external CI starts it (DEBUG and the protected
# configs enabled; 7.0 refuses both by default); Damselfly has no such switches.
REDIS_PROFILE_FLAGS=()
if ((wide)); then
  TAGS="-slow -needs:repl -needs:local-process -large-memory"
  REDIS_PROFILE_FLAGS=(--enable-debug-command yes --enable-protected-configs yes)
fi
# REDIS_SUITE_ALLOW="needs:debug needs:config-maxmemory" lifts tags from the exclusions
# for a trial run (the floors and the docs table are for the profile above).
for allowed in ${REDIS_SUITE_ALLOW:-}; do TAGS="${TAGS/ -$allowed/}"; TAGS="${TAGS/#-$allowed /}"; done
RUNTEST_FLAGS=(--timeout 60 --ignore-encoding --ignore-digest --durable --tags "$TAGS")
# The wide profile checks digests too (DEBUG DIGEST before and after a reload, a rewrite...).
if ((wide)); then RUNTEST_FLAGS=(--timeout 60 --ignore-encoding --durable --tags "$TAGS"); fi

# Per-unit server flags, each with its reason. unit/type/list sends a blocking command on
# two connections and the push that should serve them on a third, without waiting in between,
# and expects them served in send order ("BRPOPLPUSH with multiple blocked clients"): on
# several threads, a connection whose loop owns the key parks at once while one on another
# loop hops, so the push can overtake it; the client left behind waits out the 60 s test
# timeout and the unit aborts (66 passes instead of 215). Cross-connection send order is
# not something Damselfly's threads promise; the unit's own content runs on one thread here,
# and tests/e2e covers blocking pops on several. unit/type/stream-cgroups does the same with
# XREADGROUP BLOCK on one connection and DEL / SET of its stream on another ("Blocking
# XREADGROUP: key deleted"): the DEL can run first, and the reader gets NOGROUP at once
# instead of "no longer exists"; tests/e2e/test_stream_*.py cover streams on several threads.
declare -A UNIT_FLAGS=(
  [unit/type/list]="--proactor_threads=1"
  [unit/type/stream-cgroups]="--proactor_threads=1"
)

# The units run by default: every unit/ file in Redis 7.0's own test list (tests/test_helper.tcl's
# all_tests), minus SKIP_UNITS (see docs/compatibility.md, "Which units").
SKIP_UNITS=()

against=damselfly
update_docs=0
docs_only=0
only=()
while (($#)); do
  case "$1" in
    --against-redis) against=redis ;;
    --wide) ;;  # read above, before the profile is set
    --update-docs) update_docs=1 ;;
    --docs-only) update_docs=1; docs_only=1 ;;  # regenerate the docs table from the last run
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    unit/*) only+=("$1") ;;
    *) echo "redis-suite: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# MARK: - Obtaining the suite

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# A deb-src twin of every Debian archive entry apt already uses (deb822 and one-line formats).
add_deb_src() {
  local f out=/etc/apt/sources.list.d/damselfly-deb-src.sources tmp
  tmp=$(mktemp)
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" && "$f" != "$out" ]] || continue
    grep -q 'debian' "$f" || continue
    sed -e 's/^Types:[[:space:]]*deb$/Types: deb-src/' "$f" >>"$tmp"
    echo >>"$tmp"
  done
  if [[ -f /etc/apt/sources.list ]]; then
    grep -E '^deb[[:space:]].*debian' /etc/apt/sources.list | sed -e 's/^deb /deb-src /' \
      >/tmp/damselfly-deb-src.list || true
    if [[ -s /tmp/damselfly-deb-src.list ]]; then
      as_root cp /tmp/damselfly-deb-src.list /etc/apt/sources.list.d/damselfly-deb-src.list
    fi
  fi
  if [[ -s "$tmp" ]]; then as_root cp "$tmp" "$out"; fi
  rm -f "$tmp"
}

obtain_suite() {
  [[ -x "$CACHE/src/runtest" && -f "$CACHE/src/tests/test_helper.tcl" ]] && return 0
  local missing=()
  command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
  command -v tclsh >/dev/null || missing+=(tcl)
  if ((${#missing[@]})); then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
      || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
             apt-get install -y --no-install-recommends "${missing[@]}"; } || return 1
  fi
  if ! apt-cache showsrc redis 2>/dev/null | grep -q "^Version: .*$REDIS_VERSION"; then
    add_deb_src || return 1
    as_root apt-get update -qq || return 1
  fi
  local dl="$CACHE/download"
  rm -rf "$dl" "$CACHE/src"
  mkdir -p "$dl"
  (cd "$dl" && apt-get source --download-only redis >/dev/null 2>&1) || return 1
  local dsc
  dsc=$(ls "$dl"/redis_"$REDIS_VERSION"-*.dsc 2>/dev/null | head -1)
  [[ -n "$dsc" ]] || { echo "redis-suite: the archive's redis source is not $REDIS_VERSION" >&2; return 1; }
  dpkg-source --no-check -x "$dsc" "$CACHE/src" >/dev/null || return 1
  echo "redis-suite: unpacked $(basename "$dsc") into $CACHE/src" >&2
}

if ! obtain_suite; then
  echo "redis-suite: could not obtain Redis $REDIS_VERSION's test suite (needs apt access)" >&2
  exit 77
fi
need_tools tclsh redis-cli python3

if [[ $against == damselfly ]]; then
  DAMSELFLY_BIN="${DAMSELFLY_BIN:-.build/release/damselfly}"
  [[ -x "$DAMSELFLY_BIN" ]] || { echo "redis-suite: $DAMSELFLY_BIN missing (swift build -c release)" >&2; exit 2; }
  DAMSELFLY_BIN=$(realpath "$DAMSELFLY_BIN")
fi

# MARK: - Running

TLS_SERVER_FLAGS=()
tls_suffix=""
if [[ "${REDIS_SUITE_TLS:-0}" == 1 ]]; then
  # A trial over TLS: its own results files; no floors, no docs, no Redis counts recorded.
  tls_suffix=-tls
  need_tools openssl
fi
results="$CACHE/results-$against$profile_suffix$tls_suffix.tsv"   # unit passed failed status seconds
failures="$CACHE/failures-$against$profile_suffix$tls_suffix.txt" # unit: failing test name (one line each)
if ((docs_only == 0)); then
make_workdir
SUITE=$(realpath "$CACHE/src")
if [[ -n "$tls_suffix" ]]; then
  TLS_DIR="$SUITE/tests/tls"
  [[ -f "$TLS_DIR/server.crt" ]] || (cd "$SUITE" && ./utils/gen-test-certs.sh >/dev/null 2>&1)
  TLS_SERVER_FLAGS=(--tls "--tls_cert_file=$TLS_DIR/server.crt" "--tls_key_file=$TLS_DIR/server.key"
    "--tls_ca_cert_file=$TLS_DIR/ca.crt")
  LIB_CLI_ARGS=(--tls --cacert "$TLS_DIR/ca.crt" --cert "$TLS_DIR/client.crt" --key "$TLS_DIR/client.key")
  RUNTEST_FLAGS+=(--tls)
fi
: >"$results.new"
: >"$failures.new"
if ((${#only[@]})); then
  UNITS=("${only[@]}")
else
  mapfile -t UNITS < <(sed -n '/^set ::all_tests {/,/^}/p' "$SUITE/tests/test_helper.tcl" | grep -o 'unit/[a-z0-9/-]*')
  for skip in ${SKIP_UNITS[@]+"${SKIP_UNITS[@]}"}; do
    for i in "${!UNITS[@]}"; do [[ "${UNITS[$i]}" == "$skip" ]] && unset 'UNITS[i]'; done
  done
fi

# run_unit INDEX UNIT SLOT: one unit against a fresh server; writes $WORKDIR/result-INDEX
# (the results line) and $WORKDIR/failures-INDEX. SLOT picks the runtest's own port range so
# that JOBS runs side by side never race for it.
run_unit() {
  local index=$1 unit=$2 slot=$3 port log out started rc=0 secs passed failed status pid
  port=$(free_port)
  log="$WORKDIR/server-${unit//\//_}.log"
  if [[ $against == damselfly ]]; then
    # shellcheck disable=SC2086 # DAMSELFLY_FLAGS is a list of flags
    start_damselfly "$port" "$log" ${DAMSELFLY_FLAGS:-} ${UNIT_FLAGS[$unit]:-} ${TLS_SERVER_FLAGS[@]+"${TLS_SERVER_FLAGS[@]}"}
  elif ((${#TLS_SERVER_FLAGS[@]})); then
    start_redis "$port" "$log" --port 0 --tls-port "$port" --tls-cert-file "$TLS_DIR/server.crt" \
      --tls-key-file "$TLS_DIR/server.key" --tls-ca-cert-file "$TLS_DIR/ca.crt"
  else
    start_redis "$port" "$log" ${REDIS_PROFILE_FLAGS[@]+"${REDIS_PROFILE_FLAGS[@]}"}
  fi
  pid=$SERVER_PID
  echo "$pid" >"$WORKDIR/pid-$index"
  wait_ping "$port" "$against" "$log"
  out="$WORKDIR/unit-${unit//\//_}.out"
  started=$SECONDS
  (cd "$SUITE" && timeout -k 5 "$UNIT_CAP_S" ./runtest --host 127.0.0.1 --port "$port" --single "$unit" \
      --baseport $((21111 + slot * 100)) "${RUNTEST_FLAGS[@]}" </dev/null >"$out" 2>&1) || rc=$?
  secs=$((SECONDS - started))
  sed -i 's/\x1b\[[0-9;]*m//g' "$out"
  passed=$(grep -ac '^\[ok\]: ' "$out" || true)
  failed=$(grep -ac '^\[err\]: ' "$out" || true)
  if ((rc == 124 || rc == 137)); then status=hung
  elif ! kill -0 "$pid" 2>/dev/null; then status="server died"
  elif grep -aq '^\[exception\]: ' "$out"; then status=exception
  elif ((failed > 0)) || ((rc != 0)); then status=err
  else status=ok
  fi
  grep -aE '^\[(err|exception)\]: ' "$out" | sed -e "s|^|$unit: |" >"$WORKDIR/failures-$index" || true
  printf '%-28s %6d %6d  %-12s %5d\n' "$unit" "$passed" "$failed" "$status" "$secs"
  printf '%s\t%d\t%d\t%s\t%d\n' "$unit" "$passed" "$failed" "$status" "$secs" >"$WORKDIR/result-$index"
  if [[ "${KEEP_LOGS:-0}" == 1 ]]; then cp "$out" "$log" "$CACHE/"; fi
  stop_server "$pid"
  rm -f "$WORKDIR/pid-$index"
}

# Interrupted: the units' servers (started in subshells) go too.
on_exit() {
  local f
  for f in "$WORKDIR"/pid-*; do [[ -f "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null; done
  return 0
}

for unit in "${UNITS[@]}"; do
  [[ -f "$SUITE/tests/$unit.tcl" ]] || { echo "redis-suite: no such unit $unit" >&2; exit 2; }
done

# JOBS units side by side (default 2, one per core of the CI machine); each has its own server.
JOBS="${JOBS:-2}"
printf '%-28s %6s %6s  %-12s %5s\n' unit passed failed status secs
total_start=$SECONDS
slot_pid=()
for index in "${!UNITS[@]}"; do
  # A free slot: never used, or its unit's subshell has exited (polled: no job-table tricks).
  slot=""
  while [[ -z "$slot" ]]; do
    for ((s = 0; s < JOBS; s++)); do
      if [[ -z "${slot_pid[s]:-}" ]] || ! kill -0 "${slot_pid[s]}" 2>/dev/null; then slot=$s; break; fi
      [[ -n "$(ps -o stat= -p "${slot_pid[s]}" 2>/dev/null | grep Z)" ]] && { slot=$s; break; }
    done
    [[ -z "$slot" ]] && sleep 0.2
  done
  (run_unit "$index" "${UNITS[$index]}" "$slot") &
  slot_pid[slot]=$!
done
wait
for index in "${!UNITS[@]}"; do
  cat "$WORKDIR/result-$index" >>"$results.new" 2>/dev/null \
    || printf '%s\t0\t0\t%s\t0\n' "${UNITS[$index]}" "not run" >>"$results.new"
  cat "$WORKDIR/failures-$index" >>"$failures.new" 2>/dev/null || true
done
cp "$results.new" "$WORKDIR/this-run.tsv"
# A run of named units replaces their rows in the last results and keeps the others (so the
# table can be regenerated after rerunning a few units); a run of every unit replaces the file.
merge_rows() { # merge_rows OLD NEW: NEW's rows over OLD's, in OLD's order, NEW's extra rows after
  awk -F'\t' 'NR == FNR {row[$1] = $0; order[++n] = $1; next}
               /^#/ || !NF {print; next}
               $1 in row {print row[$1]; done[$1] = 1; next} {print}
               END {for (i = 1; i <= n; i++) if (!(order[i] in done)) print row[order[i]]}' "$2" "$1"
}
if ((${#only[@]})) && [[ -f "$results" ]]; then
  merge_rows "$results" "$results.new" >"$results.merged" && mv "$results.merged" "$results"
  rm -f "$results.new"
else
  mv "$results.new" "$results"
fi
mv "$failures.new" "$failures"
total=$((SECONDS - total_start))
awk -F'\t' -v t="$total" '{p += $2; f += $3} END {printf "Redis suite total: %d of its tests passed here (%d did not), %d s; the gate is the floors below\n", p, f, t}' "$results"
fi

[[ -n "$tls_suffix" ]] && exit 0

if [[ $against == redis ]]; then
  if ((${#only[@]})) && [[ -f "$REDIS_COUNTS" ]]; then
    cut -f1-4 "$WORKDIR/this-run.tsv" >"$WORKDIR/counts.new"
    merge_rows "$REDIS_COUNTS" "$WORKDIR/counts.new" >"$WORKDIR/counts.merged"
    cp "$WORKDIR/counts.merged" "$REDIS_COUNTS"
    echo "updated $REDIS_COUNTS for ${only[*]}"
  elif ((${#only[@]} == 0)); then
    { echo "# Redis $REDIS_VERSION's own counts under scripts/redis-suite.sh's ${profile_suffix:+wide }profile (${profile_suffix:+--wide }--against-redis)."
      echo "# unit passed failed status"
      cut -f1-4 "$results"; } >"$REDIS_COUNTS"
    echo "recorded $REDIS_COUNTS"
  fi
  exit 0
fi

# MARK: - Docs and floors

if ((update_docs)); then
  python3 - "$results" "$REDIS_COUNTS" "$FLOORS" "$DOC" "$TAGS" "$UNIT_CAP_S" "$DOC_BLOCK" "${RUNTEST_FLAGS[*]:0:${#RUNTEST_FLAGS[@]}-2}" <<'EOF'
import re, sys
results, redis_counts, floors, doc, tags, cap, block_name, flags = sys.argv[1:]
def rows(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        f = line.rstrip("\n").split("\t")
        out[f[0]] = (int(f[1]), int(f[2]), f[3])
    return out
ours, theirs = rows(results), rows(redis_counts)
flag = " --wide" if block_name.endswith("-wide") else ""
lines = [f"<!-- BEGIN {block_name} (generated by scripts/redis-suite.sh{flag} --update-docs; do not edit) -->",
         "", f"Profile: `{flags} --tags \"{tags}\"`, "
         f"one fresh server per unit, {cap} s cap per unit.", "",
         "| unit | Damselfly passed | Damselfly failed | status | redis-server passed | % of Redis |",
         "|---|---:|---:|---|---:|---:|"]
tp = tr = 0
for unit, (p, f, st) in ours.items():
    rp = theirs.get(unit, (0, 0, "?"))[0]
    tp += p; tr += rp
    pct = f"{100 * p / rp:.0f} %" if rp else "–"
    lines.append(f"| {unit} | {p} | {f} | {st} | {rp} | {pct} |")
lines.append(f"| **total** | **{tp}** | | | **{tr}** | **{100 * tp / tr:.1f} %** |" if tr else "| total | | | | | |")
lines += ["", f"<!-- END {block_name} -->"]
block = "\n".join(lines)
text = open(doc).read()
pat = re.compile(rf"<!-- BEGIN {re.escape(block_name)} .*?<!-- END {re.escape(block_name)} -->", re.S)
if pat.search(text):
    text = pat.sub(lambda _: block, text)
else:
    title = "Redis's own test suite, wide profile" if flag else "Redis's own test suite"
    text = text.rstrip("\n") + f"\n\n## {title}\n\n" + block + "\n"
open(doc, "w").write(text)
print(f"updated {doc}: {tp} of {tr} ({100 * tp / max(tr, 1):.1f} %)")
EOF
fi

[[ -f "$FLOORS" ]] || { echo "redis-suite: $FLOORS missing" >&2; exit 1; }
breach=0
while IFS=$'\t' read -r unit passed failed status secs; do
  floor=$(awk -v u="$unit" '$1 == u {print $2; exit}' "$FLOORS")
  if [[ -z "$floor" ]]; then
    echo "FLOOR MISSING: $unit has no floor in $FLOORS (passed $passed)"; breach=1
  elif ((passed < floor)); then
    echo "FLOOR BREACHED: $unit passed $passed < floor $floor ($status)"; breach=1
  fi
done < <(if ((docs_only)); then cat "$results"; else cat "$WORKDIR/this-run.tsv"; fi)
((breach == 0)) && echo "floors: every unit at or above its floor"
exit "$breach"

#!/usr/bin/env bash
# Which malloc (issue 16 §5): the same Damselfly binary with glibc's malloc and with Debian's
# mimalloc (libmimalloc2.0, put in front of glibc's with LD_PRELOAD, which is what linking it
# would do), side by side in one run:
#   memory  Benchmarks/memory_list_zset.sh MODE=list (1,000,000 Sidekiq-style payloads in one
#           list, RSS growth against redis-server's), ROUNDS times, the two allocators alternating
#   cpu     Benchmarks/cpu_per_op.sh (server CPU µs per request, SET/GET/LPUSH/RPOP P1/P16 and
#           the queue drain; redis-server, mimalloc as "Damselfly", glibc as "before")
#   conns   Benchmarks/conn_memory.sh (memory per idle connection)
#
#   Benchmarks/allocator.sh        # Env: MODE [memory,cpu,conns], ROUNDS [4], DAMSELFLY_BIN,
#                                  #      MIMALLOC [/usr/lib/x86_64-linux-gnu/libmimalloc.so.2];
#                                  #      the other scripts' env (N, ELEMENTS, ...) passes through
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh

MODE="${MODE:-memory,cpu,conns}"
ROUNDS="${ROUNDS:-4}"
MIMALLOC="${MIMALLOC:-/usr/lib/x86_64-linux-gnu/libmimalloc.so.2}"
[[ -r "$MIMALLOC" ]] || { echo "no $MIMALLOC: apt-get install libmimalloc2.0" >&2; exit 1; }
resolve_damselfly_bin
make_workdir

# exec keeps the wrapper's pid, so the scripts read the server's own /proc figures.
glibc_bin=$DAMSELFLY_BIN
mi_bin="$WORKDIR/damselfly-mimalloc"
printf '#!/bin/sh\nLD_PRELOAD=%q exec %q "$@"\n' "$MIMALLOC" "$glibc_bin" >"$mi_bin"
chmod +x "$mi_bin"

IFS=, read -ra modes <<<"$MODE"
for mode in "${modes[@]}"; do
  case $mode in
    memory)
      for ((r = 1; r <= ROUNDS; r++)); do
        for alloc in glibc mimalloc; do
          bin=$glibc_bin; [[ $alloc == mimalloc ]] && bin=$mi_bin
          echo "round $r $alloc: $(MODE=list DAMSELFLY_BIN=$bin Benchmarks/memory_list_zset.sh 2>&1 \
            | grep -E 'damselfly +RSS|ratio' | tr -s ' ' | tr '\n' ' ')"
        done
      done ;;
    cpu) DAMSELFLY_BIN=$mi_bin BASE_BIN=$glibc_bin Benchmarks/cpu_per_op.sh ;;
    conns) DAMSELFLY_BIN=$mi_bin BEFORE_BIN=$glibc_bin Benchmarks/conn_memory.sh ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
  esac
done

#!/usr/bin/env bash
# The TLS library choice of issue 18, measured (docs/benchmarks.md, "TLS library"):
# Benchmarks/TLSLibraries builds one program that runs the same TLS work through
# Damselfly's own session (DamselflyTLS: Debian's OpenSSL over memory BIOs, as the
# server uses it) and through swift-nio-ssl (BoringSSL inside its NIO handler), both
# ends of a connection in one process, and prints process CPU time per operation:
# a full handshake (RSA-2048 certificate, TLS 1.3), a SET and its +OK, 16 pipelined
# GETs and their 32 B values (per command), and a 16 KiB GET reply. Then it checks
# whether this kernel offers kTLS (the `tls` TCP upper-layer protocol), the third choice.
#
#   Benchmarks/tls_library.sh            # SCALE [1] multiplies the iteration counts
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh
need_tools openssl python3
make_workdir
(cd "$WORKDIR" && openssl req -x509 -new -nodes -newkey rsa:2048 -keyout server.key -out server.crt -days 2 \
  -subj /CN=127.0.0.1) >/dev/null 2>&1
(cd Benchmarks/TLSLibraries && swift build -c release >/dev/null)
echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); $(openssl version)"
Benchmarks/TLSLibraries/.build/release/tls-library-bench "$WORKDIR/server.crt" "$WORKDIR/server.key" "${SCALE:-1}"
python3 - <<'PY'
import socket
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
client = socket.create_connection(listener.getsockname())
try:
    client.setsockopt(socket.IPPROTO_TCP, 31, b"tls")  # TCP_ULP
    print("kTLS: the kernel offers the tls ULP")
except OSError as error:
    print(f"kTLS: not offered by this kernel (TCP_ULP tls: {error.strerror})")
PY

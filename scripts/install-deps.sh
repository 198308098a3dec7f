#!/usr/bin/env bash
# Installs what building and testing Damselfly needs. Idempotent: installed
# packages are skipped and apt-get update runs at most once.
set -euo pipefail

# dpkg-dev and tcl: scripts/redis-suite.sh unpacks and runs Redis's own test suite.
# prometheus: promtool checks the /metrics exposition (tests/e2e/test_metrics.py).
# chromium, chromium-driver and selenium: the jobs dashboard's browser tests (tests/e2e/test_jobs_web.py).
# libssl-dev: TLS (Sources/CTLS); openssl: the TLS tests make their certificates with it;
# tcl-tls: scripts/redis-suite.sh with REDIS_SUITE_TLS=1 (runtest --tls).
# redis-sentinel: tests/e2e/test_sentinel.py (a sentinel monitoring a Damselfly master).
# gdb and pytest-timeout: scripts/test.sh's watchdogs print every thread's stack
# when the unit tests or an end-to-end test hang, and fail instead of waiting.
APT_PACKAGES=(liburing-dev libxxhash-dev liblua5.1-0-dev lua-cjson lua-bitop redis-server redis-tools redis-sentinel ruby-sidekiq zlib1g-dev
  dpkg-dev tcl tcl-tls prometheus chromium chromium-driver libssl-dev openssl gdb)
PIP_PACKAGES=(redis hypothesis xxhash pytest selenium pytest-timeout)

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: not root and no sudo; cannot install apt packages" >&2; fi
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: apt packages to install: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "install-deps: apt packages already installed: ${APT_PACKAGES[*]}"
fi

pip_missing=()
for p in "${PIP_PACKAGES[@]}"; do
  python3 -c "import ${p//-/_}" 2>/dev/null || pip_missing+=("$p")
done
if ((${#pip_missing[@]})); then
  echo "install-deps: pip packages to install: ${pip_missing[*]}"
  python3 -m pip install --quiet "${pip_missing[@]}" \
    || python3 -m pip install --quiet --break-system-packages "${pip_missing[@]}"
else
  echo "install-deps: python packages already installed: ${PIP_PACKAGES[*]}"
fi

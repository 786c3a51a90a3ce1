#!/usr/bin/env bash
# Installs the system tools the tests and scripts need (sipp, tshark, ...), idempotently.
# A fresh machine has only the Rust toolchain; run as root. Prints what it installs.
set -euo pipefail
need=()
command -v sipp   >/dev/null 2>&1 || need+=(sip-tester)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v ss     >/dev/null 2>&1 || need+=(iproute2)
command -v svmap >/dev/null 2>&1 || need+=(sipvicious)
command -v curl   >/dev/null 2>&1 || need+=(curl)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v faketime >/dev/null 2>&1 || need+=(faketime)   # libfaketime: a gateway's wall clock stepped, in tests
command -v promtool >/dev/null 2>&1 || [ "${SIPFENCE_SKIP_PROMTOOL:-0}" = 1 ] || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer once, non-interactively
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "deps: sipp $(command -v sipp) tshark $(command -v tshark) redis-server $(command -v redis-server)" >&2

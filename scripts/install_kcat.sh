#!/usr/bin/env bash
# Debian's kcat (librdkafka 2.0.2 on bookworm), for the broker compatibility suite
# (tests/devkit/compat): the kcat a developer gets from `apt-get install kcat`, so the suite
# says what that kcat does against each local broker mode. Idempotent: does nothing when
# `kcat` is on PATH (or AEROGRID_KCAT names a kcat binary, which the tests then use).
#
# Exit status: 0 when kcat is (now) installed; 3 when it is missing and cannot be installed
# here (not root, or no apt-get): install it yourself, e.g. `sudo apt-get install kcat`, or
# point AEROGRID_KCAT at a kcat binary.
set -euo pipefail

if [ -n "${AEROGRID_KCAT:-}" ] && [ -x "${AEROGRID_KCAT}" ]; then
  echo "install_kcat: using AEROGRID_KCAT=${AEROGRID_KCAT}"
  exit 0
fi
if command -v kcat >/dev/null 2>&1; then
  echo "install_kcat: $(command -v kcat) is already installed"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_kcat: kcat is not installed and this script can only install it as root" \
    "with apt-get (Debian/Ubuntu). Install it yourself (e.g. 'sudo apt-get install kcat')," \
    "or set AEROGRID_KCAT to a kcat binary." >&2
  exit 3
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the package yet (a fresh
# container has empty lists); an update costs time and network.
if ! apt-cache show kcat >/dev/null 2>&1; then
  apt-get update
fi
apt-get install -y --no-install-recommends kcat
echo "install_kcat: installed $(command -v kcat) ($(kcat -V 2>/dev/null | sed -n 's/^Version //p'))"

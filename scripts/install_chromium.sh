#!/usr/bin/env bash
# Headless Chromium from Debian's own packages, for the Excel add-in's harness tests
# (excel/test-live/harness_chromium.mjs drives it with puppeteer-core; no browser is
# downloaded from anywhere else). Idempotent: does nothing when `chromium` is on PATH (or
# AEROGRID_CHROMIUM names a Chromium binary, which the tests then use).
#
# Exit status: 0 when chromium is (now) installed; 3 when it is missing and cannot be
# installed here (not root, or no apt-get): install it yourself, e.g.
# `sudo apt-get install chromium`, or point AEROGRID_CHROMIUM at a Chromium binary.
set -euo pipefail

if [ -n "${AEROGRID_CHROMIUM:-}" ] && [ -x "${AEROGRID_CHROMIUM}" ]; then
  echo "install_chromium: using AEROGRID_CHROMIUM=${AEROGRID_CHROMIUM}"
  exit 0
fi
if command -v chromium >/dev/null 2>&1; then
  echo "install_chromium: $(command -v chromium) is already installed"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_chromium: chromium is not installed and this script can only install it as root" \
    "with apt-get (Debian/Ubuntu). Install it yourself (e.g. 'sudo apt-get install chromium')," \
    "or set AEROGRID_CHROMIUM to a Chromium binary." >&2
  exit 3
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the package yet (a fresh
# container has empty lists); an update costs time and network.
if ! apt-cache show chromium >/dev/null 2>&1; then
  apt-get update
fi
apt-get install -y --no-install-recommends chromium
echo "install_chromium: installed $(command -v chromium) ($(chromium --version 2>/dev/null || echo '?'))"

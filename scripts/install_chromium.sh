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
exec bash "$(dirname "$0")/apt_install_tool.sh" chromium chromium AEROGRID_CHROMIUM Chromium --version

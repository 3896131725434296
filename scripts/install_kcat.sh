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
exec bash "$(dirname "$0")/apt_install_tool.sh" kcat kcat AEROGRID_KCAT kcat -V

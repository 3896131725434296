#!/usr/bin/env bash
# One command from Debian's own packages, for the test bed's third-party clients
# (install_chromium.sh, install_kcat.sh). Idempotent: does nothing when the command is on
# PATH, or when the environment variable named by ENV_VAR names an executable (the tests
# then use that one).
#
#   apt_install_tool.sh COMMAND PACKAGE ENV_VAR WHAT [VERSION_ARG]
#
# Exit status: 0 when the command is (now) installed; 3 when it is missing and cannot be
# installed here (not root, or no apt-get): the caller's tests skip then (fail if CI=true).
set -euo pipefail

command_name=$1 package=$2 env_var=$3 what=$4 version_arg=${5:---version}
me="install_${command_name}"

override=${!env_var:-}
if [ -n "$override" ] && [ -x "$override" ]; then
  echo "$me: using $env_var=$override"
  exit 0
fi
if command -v "$command_name" >/dev/null 2>&1; then
  echo "$me: $(command -v "$command_name") is already installed"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "$me: $command_name is not installed and this script can only install it as root" \
    "with apt-get (Debian/Ubuntu). Install it yourself (e.g. 'sudo apt-get install $package')," \
    "or set $env_var to a $what binary." >&2
  exit 3
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the package yet (a fresh
# container has empty lists); an update costs time and network.
if ! apt-cache show "$package" >/dev/null 2>&1; then
  apt-get update
fi
apt-get install -y --no-install-recommends "$package"
echo "$me: installed $(command -v "$command_name") ($("$command_name" "$version_arg" 2>&1 | head -n 1 || echo '?'))"

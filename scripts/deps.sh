#!/usr/bin/env bash
# deps.sh - makes sure the Debian packages mela builds with are installed.
# As root it installs what is missing with apt-get; otherwise it prints the
# exact apt-get line to run and fails.
#   scripts/deps.sh          what the build and the tests need
#   scripts/deps.sh --fuzz   and clang with its libFuzzer runtime (scripts/fuzz.sh)
# The Python package's python3-dev and python3-numpy are optional: installed
# as root when missing, but their absence (or a failed install) only skips it.
set -euo pipefail
# libopenmpi-dev, openmpi-bin: optional for the build (MPI runs), needed by the MPI tests
pkgs=(gcc make cmake pkg-config libopenblas-dev libpng-dev libzip-dev libjpeg-dev libdnnl-dev libcurl4-openssl-dev
      libopenmpi-dev openmpi-bin)
if [ "${1:-}" = "--fuzz" ]; then
  pkgs+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
optional=()
for p in python3-dev python3-numpy; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || optional+=("$p")
done
if [ ${#optional[@]} -gt 0 ] && [ "$(id -u)" -eq 0 ]; then
  echo "deps: installing ${optional[*]} (optional: the Python package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null; } ||
    echo "deps: could not install ${optional[*]}: the Python package is skipped" >&2
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: missing Debian packages; run as root:" >&2
  echo "  apt-get install -y ${missing[*]}" >&2
  exit 1
fi

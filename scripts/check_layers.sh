#!/usr/bin/env bash
# check_layers.sh - fails when a file of src/ or include/ includes a header
# of a layer it may not depend on (docs/architecture.md).
#   scripts/check_layers.sh [ROOT]    ROOT defaults to the repository
# Prints one line per bad include, "file:line: layer X includes Y".
#
# Layers and what each may include (its own headers and those below):
#   kernels: kernels            core: core, kernels
#   nn, data, io: itself, core, kernels (siblings: none includes another)
#   learn: learn, nn, data, io, core, kernels    cli: everything
# A quoted header is "layer/name.h" or a public header, whose layer is
# mela.h core, mela_nn.h nn, mela_data.h data, mela_io.h io, mela_learn.h
# learn. Anything else quoted is refused, so that "../core/x.h" cannot slip
# by. include/*.h follow the same order and include public headers only, and
# so does python/ (the Python package: a client of the public API).
set -euo pipefail
root=${1:-"$(dirname "$0")/.."}
cd "$root"

declare -A allowed=(
  [kernels]="kernels"
  [core]="core kernels"
  [nn]="nn core kernels"
  [data]="data core kernels"
  [io]="io core kernels"
  [learn]="learn nn data io core kernels"
  [cli]="cli learn nn data io core kernels"
  [python]="learn nn data io core"
)
declare -A public=(
  [mela.h]=core [mela_nn.h]=nn [mela_data.h]=data [mela_io.h]=io [mela_learn.h]=learn [mela_tune.h]=learn
)

bad=0
fail() {
  echo "$1" >&2
  bad=1
}

# The layer of file $1 (relative path), or nothing.
layer_of_file() {
  case $1 in
    src/*/*) local l=${1#src/}; l=${l%%/*}; [ -n "${allowed[$l]+x}" ] && echo "$l" ;;
    include/*) echo "${public[${1#include/}]:-}" ;;
    python/*) echo python ;;
  esac
  return 0
}

n=0
while IFS= read -r f; do
  n=$((n + 1))
  layer=$(layer_of_file "$f")
  if [ -z "$layer" ]; then
    fail "$f: not in a known layer (src/<layer>/ or a public header of include/)"
    continue
  fi
  # "header" and <mela*.h>; other <...> are system headers.
  while IFS=: read -r line hdr; do
    dep=
    case $hdr in
      */*) dep=${hdr%%/*}; [ -n "$dep" ] && [ -n "${allowed[$dep]+x}" ] || dep= ;;
      ?*) dep=${public[$hdr]:-} ;;
    esac
    if [ -z "$dep" ]; then
      fail "$f:$line: layer $layer includes $hdr (not a layer's header)"
    elif [[ $f == include/* && $hdr == */* ]]; then
      fail "$f:$line: layer $layer includes $hdr (a public header includes an internal one)"
    elif [[ $f == python/* && $hdr == */* ]]; then
      fail "$f:$line: python includes $hdr (the package uses the public headers only)"
    elif [[ " ${allowed[$layer]} " != *" $dep "* ]]; then
      fail "$f:$line: layer $layer includes $hdr"
    fi
  done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*("|<mela)' "$f" |
           sed -E 's/^([0-9]+):[^"<]*["<]([^">]*)[">].*/\1:\2/')
done < <(find src include python -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null | LC_ALL=C sort)
if [ "$n" -eq 0 ]; then
  echo "check_layers: no sources under $(pwd)/src or include" >&2
  exit 1
fi
exit $bad

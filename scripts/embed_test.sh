#!/usr/bin/env bash
# embed_test.sh - installs mela from BUILD into WORK/prefix, then builds
# examples/classify.c against that installed tree twice: with pkg-config
# (WORK/classify-pc) and with CMake's find_package(mela) (WORK/example/classify).
#   scripts/embed_test.sh BUILD SOURCE WORK
# MELA_EMBED_FLAGS: extra compiler and linker flags (the sanitizer build's).
# CTest test_embed runs it and then runs both programs.
set -euo pipefail
build=$1 src=$2 work=$3
flags=${MELA_EMBED_FLAGS:-}
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name mela.pc | head -n 1)
[ -n "$pc" ] || { echo "embed_test: no mela.pc installed under $prefix" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir mela)
# shellcheck disable=SC2046,SC2086
cc $flags -Wall -Werror "$src/examples/classify.c" $(pkg-config --cflags --libs mela) \
  -Wl,-rpath,"$libdir" -o "$work/classify-pc"
cmake -S "$src/examples" -B "$work/example" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="$flags -Wall -Werror" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$work/example" >/dev/null

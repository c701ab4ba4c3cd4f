#!/usr/bin/env bash
# valgrind.sh - the test suite under valgrind's memcheck: a build without
# -march=native (valgrind does not decode AVX-512) in build-vg/, every
# tests/test_*.c binary run with the environment CTest gives it. Fails on
# any memcheck error or definite leak. Slow (tens of minutes on 2 cores):
# run by hand, not by CI (which has ASan and UBSan).
#   scripts/valgrind.sh [TEST_NAME_REGEX]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind.sh: install valgrind (apt-get install valgrind)" >&2; exit 1; }
scripts/deps.sh
cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMELA_NATIVE=OFF -DMELA_BUILD_BENCH=OFF >/dev/null
cmake --build build-vg -j"$(nproc)" >/dev/null
export MELA_SHARED_DATA=$PWD/../shared/data MELA_FIXTURES=$PWD/tests/fixtures MELA_BIN=$PWD/build-vg/mela
export OPENBLAS_NUM_THREADS=1
failed=0
for t in build-vg/test_*; do
  name=$(basename "$t")
  [[ -n "${1:-}" && ! $name =~ $1 ]] && continue
  start=$(date +%s)
  if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
       --show-leak-kinds=definite "$t" >"build-vg/$name.vg.log" 2>&1; then
    echo "$name: clean ($(( $(date +%s) - start )) s)"
  else
    echo "$name: FAILED, see build-vg/$name.vg.log"
    failed=1
  fi
done
exit $failed

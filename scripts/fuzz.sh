#!/usr/bin/env bash
# fuzz.sh - builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan)
# in build-fuzz/ and runs each for a bounded time, from the seeds of
# fuzz/corpus/<target>/ and the inputs of tests/regress/<target>/. Fails when
# any target finds a crash, a leak, an input slower than 10 s or one that
# needs more than 2 GB; the input is left in build-fuzz/artifacts/<target>/
# (fix the fault, then keep the input in tests/regress/<target>/).
#   scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]   default: 20 s, every target
# Prints the executions of each target. New inputs libFuzzer finds go to
# build-fuzz/corpus/<target>/, never into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(image json safetensors omniglot options tune)
scripts/deps.sh --fuzz
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMELA_FUZZ=ON -DMELA_BUILD_TESTS=OFF -DMELA_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz >/dev/null
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
for t in "${targets[@]}"; do
  [ -x "build-fuzz/fuzz_$t" ] || { echo "fuzz: no target '$t'" >&2; exit 2; }
  mkdir -p "build-fuzz/corpus/$t" "build-fuzz/artifacts/$t"
  opts=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="build-fuzz/artifacts/$t/")
  [ -f "fuzz/$t.dict" ] && opts+=(-dict="fuzz/$t.dict")
  [ "$t" = omniglot ] && opts+=(-max_len=16384) # zips of a few images
  dirs=("build-fuzz/corpus/$t" "fuzz/corpus/$t")
  [ -d "tests/regress/$t" ] && dirs+=("tests/regress/$t")
  log=build-fuzz/$t.log
  if "build-fuzz/fuzz_$t" "${opts[@]}" "${dirs[@]}" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: $t: ${runs:-?} executions in ${secs} s, no crash"
  else
    echo "fuzz: $t FAILED (build-fuzz/artifacts/$t/):" >&2
    grep -E "ERROR|SUMMARY|Test unit written|runtime error" "$log" | head -20 >&2 || tail -30 "$log" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi

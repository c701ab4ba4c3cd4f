#!/usr/bin/env bash
# Training throughput, mela against PyTorch (issue 11), in one run on one
# machine: every learner row of bench/bench_learners.c against the same row
# of bench/torch_learners.py (2 threads each), one row per process so that
# each peak RSS is that row's alone, mela then PyTorch row by row; then the
# Conv-4 convolution layers, forward and both gradients, on one thread
# (bench_conv --speed against bench/torch_conv.py), and the machine's
# 2-thread sgemm rate. Both use the same OpenBLAS kernels (OPENBLAS_CORETYPE
# from `mela --version`). Writes a markdown report to stdout (progress and
# build output go to stderr):
#
#     bench/scripts/speed.sh [REPS] > bench/results/speed.md
#
# REPS (default 3, at least 3): timed iterations per row, after 2 warm-up
# ones; the convolutions take the median of 5 x REPS calls. Needs PyTorch
# (Debian's python3-torch: installed with apt-get when run as root).
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=${1:-3}
if ! [[ $reps =~ ^[0-9]+$ ]] || ((reps < 3)); then
    echo "usage: bench/scripts/speed.sh [REPS]   (REPS: at least 3, default 3)" >&2
    exit 2
fi
threads=2
conv_reps=$((5 * reps))
py=/usr/bin/python3
start=$(date +%s)

if ! $py -c 'import torch' 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "speed.sh: installing python3-torch" >&2
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-torch >&2
    else
        echo "speed.sh: PyTorch is missing; install it as root with: apt-get install -y python3-torch" >&2
        exit 1
    fi
fi

# build (or bring up to date) the tool and the two benchmarks in build/, as
# a Release build without sanitizers (a build/ configured otherwise is
# configured again)
if ! grep -qx 'CMAKE_BUILD_TYPE:STRING=Release' build/CMakeCache.txt 2>/dev/null ||
    grep -qx 'MELA_SANITIZE:BOOL=ON' build/CMakeCache.txt; then
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMELA_SANITIZE=OFF >&2
fi
cmake --build build -j2 --target mela_cli bench_learners bench_conv >&2

# the same BLAS kernels for both (OpenBLAS falls back to SSE3 on unknown CPUs)
core=${OPENBLAS_CORETYPE:-$(build/mela --version | sed -n 's/.*OpenBLAS kernels: \([^;)]*\).*/\1/p')}
export OPENBLAS_CORETYPE=$core

raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
{
    echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src include bench 2>/dev/null || echo '+uncommitted')"
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "cores=$(nproc)"
    echo "coretype=$core"
    echo "conv=$(build/mela --version | sed -n 's/.*convolutions: \([^)]*\)).*/\1/p')"
    echo "torch=$($py -c 'import torch; print(torch.__version__)') (python3-torch $(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null || echo '?'))"
    echo "reps=$reps"
    echo "conv_reps=$conv_reps"
    echo "threads=$threads"
    echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$raw/meta"

# one row per process, mela then PyTorch, row by row
nrows=$(build/bench_learners --list | wc -l)
build/bench_learners --list >"$raw/rows"
for ((i = 1; i <= nrows; i++)); do
    echo "speed.sh: row $i/$nrows ($(sed -n "${i}p" "$raw/rows" | cut -d' ' -f2))" >&2
    build/bench_learners --only "$i" --reps "$reps" --threads "$threads" >>"$raw/mela_rows" ||
        echo "ROW id=$i failed=1" >>"$raw/mela_rows"
    $py bench/torch_learners.py --only "$i" --reps "$reps" --threads "$threads" >>"$raw/torch_rows" ||
        echo "ROW id=$i failed=1" >>"$raw/torch_rows"
done

# tiny operations on 2 threads can be slower than on one (thread start-up
# and wake-up cost more than the work): the sinusoid row once more on 1
# thread each, for a note under the table
sin=$(grep -n ' maml-sinusoid ' "$raw/rows" | cut -d: -f1)
build/bench_learners --only "$sin" --reps "$reps" --threads 1 >"$raw/mela_rows_1t" || true
$py bench/torch_learners.py --only "$sin" --reps "$reps" --threads 1 >"$raw/torch_rows_1t" || true

echo "speed.sh: convolutions and sgemm" >&2
build/bench_conv --speed --reps "$conv_reps" >"$raw/mela_conv" || echo "failed" >>"$raw/mela_conv"
$py bench/torch_conv.py --reps "$conv_reps" --threads 1 >"$raw/torch_conv" || echo "failed" >>"$raw/torch_conv"

{
    echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "seconds=$(($(date +%s) - start))"
} >>"$raw/meta"
$py bench/scripts/speed_report.py "$raw"

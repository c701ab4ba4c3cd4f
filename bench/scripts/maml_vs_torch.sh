#!/usr/bin/env bash
# One MAML meta-iteration (meta-gradient of a meta-batch + Adam step) on the
# Omniglot Conv-4, mela against PyTorch on the same CPU, same threads and the
# same OpenBLAS kernels, measured one after the other in one run.
# Needs python3-torch (Debian). Usage: bench/scripts/maml_vs_torch.sh [REPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=${1:-5}
threads=${2:-2}
# the same BLAS kernels for both (OpenBLAS falls back to SSE3 on unknown CPUs)
core=${OPENBLAS_CORETYPE:-$(build/mela --version | sed 's/.*OpenBLAS kernels: \([^;)]*\).*/\1/')}
export OPENBLAS_CORETYPE=$core
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, OPENBLAS_CORETYPE=$core"
echo
echo '### mela (`build/bench_maml --reps '"$reps"' --threads '"$threads"'`)'
echo
build/bench_maml --reps "$reps" --threads "$threads"
echo
echo '### PyTorch (`python3 bench/torch_maml.py --reps '"$reps"' --threads '"$threads"'`)'
echo
/usr/bin/python3 bench/torch_maml.py --reps "$reps" --threads "$threads"

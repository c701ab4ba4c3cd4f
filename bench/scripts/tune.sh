#!/usr/bin/env bash
# mela tune's winner against the paper's defaults at the same total compute
# (bench/results/tune.md): successive halving over bench/spaces/fomaml-5w1s.txt
# (9 trials, rungs 40, 120, 360 meta-iterations: 840 in all), then one run of
# the defaults for those 840 iterations; both best-validation checkpoints on
# the 600 fixed test episodes. Usage: bench/scripts/tune.sh [WORKERS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/../.."
workers=${1:-2}
threads=${2:-1}
data=${MELA_DATA:-../shared/data/omniglot}
mela=${MELA_BIN:-build/mela}
dir=runs/tune-fomaml-5w1s
t0=$(date +%s)
$mela tune --space bench/spaces/fomaml-5w1s.txt --workers "$workers" --threads "$threads" \
  --data-dir "$data" --out-dir $dir
t1=$(date +%s)
best=$(sed -n 's/.*trial \([0-9]*\) (.*/\1/p' $dir/best.conf | head -1)
$mela eval $(printf "%s/trial-%04d/best.safetensors" $dir "$best") --data-dir "$data" --threads "$threads"
t2=$(date +%s)
$mela train --learner fomaml --ways 5 --iterations 840 --val-every 40 --threads $((workers * threads)) \
  --data-dir "$data" --out-dir runs/defaults-fomaml-5w1s-840 --overwrite
t3=$(date +%s)
echo "wall: tune $((t1 - t0)) s, defaults (with its test) $((t3 - t2)) s"

#!/usr/bin/env bash
# Reproduces the MAML sinusoid results (Finn et al. 2017, section 5.1):
# MLP 1-40-40-1, one inner step of 0.01, meta-batch 25, Adam 0.001,
# 70,000 meta-iterations, for K = 5 and K = 10; then the MSE on 600 fixed
# test tasks (100 query points each) after 1, 5 and 10 inner steps.
# Usage: bench/scripts/sinusoid.sh [ITERATIONS] > bench/results/sinusoid.md
set -euo pipefail
cd "$(dirname "$0")/../.."
iters=${1:-70000}
mela=build/mela
echo "# MAML on sinusoids"
echo
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo
for K in 5 10; do
  out=runs/sinusoid-k$K
  start=$(date +%s)
  $mela train --dataset sinusoid --shots $K --queries $K --iterations "$iters" --report 10000 \
    --out-dir $out > $out.log 2>&1 || { cat $out.log; exit 1; }
  secs=$(( $(date +%s) - start ))
  echo "## K = $K"
  echo
  echo "\`$mela train --dataset sinusoid --shots $K --queries $K --iterations $iters --out-dir $out\`: ${secs} s wall"
  echo
  echo "| inner steps at test | MSE (600 tasks, 95% CI) |"
  echo "| --- | --- |"
  for s in 1 5 10; do
    r=$($mela eval $out/best.safetensors --steps $s)
    echo "| $s | $(echo "$r" | sed 's/.*mse \([0-9.]*\) +- \([0-9.]*\).*/\1 ± \2/') |"
  done
  echo
done

#!/usr/bin/env bash
# Meta-trains gradient-based learners on Omniglot (Vinyals split) with the
# defaults of Finn et al. (2017) for the chosen ways, for a given number of
# meta-iterations, then evaluates the best validation checkpoint on 600 fixed
# test episodes (15 queries per class). Appends one markdown row per run.
# Usage: bench/scripts/omniglot.sh RESULTS.md "learner ways iterations" ...
#   e.g. bench/scripts/omniglot.sh bench/results/omniglot-gbml.md "maml 5 3000" "fomaml 20 1500"
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
shift
data=${MELA_DATA:-../shared/data/omniglot}
# a frozen binary (and the commit it was built from) keeps long queues consistent
mela=${MELA_BIN:-build/mela}
if [ -x runs/bin/mela ] && [ -z "${MELA_BIN:-}" ]; then mela=runs/bin/mela; fi
commit=$(cat runs/bin/COMMIT 2>/dev/null || git rev-parse --short HEAD)
if [ ! -s "$out" ]; then
  {
    echo "# Gradient-based learners on Omniglot (Vinyals split, 600 test episodes)"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, OpenBLAS kernels: $($mela --version | sed 's/.*OpenBLAS kernels: \([^;)]*\).*/\1/')"
    echo
    echo "| learner | ways | shots | meta-iterations | wall | test accuracy (95% CI) | commit | command |"
    echo "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |"
  } > "$out"
fi
for spec in "$@"; do
  read -r learner ways iters <<< "$spec"
  dir=runs/omniglot-$learner-${ways}w1s
  cmd="$mela train --learner $learner --ways $ways --iterations $iters --data-dir $data --out-dir $dir"
  start=$(date +%s)
  $cmd --report 100 > $dir.log 2>&1 || { tail -5 $dir.log; exit 1; }
  secs=$(( $(date +%s) - start ))
  res=$(grep '^test:' $dir.log | sed 's/test: accuracy \([0-9.]*%\) +- \([0-9.]*%\).*/\1 ± \2/')
  printf '| %s | %s | 1 | %s | %dm%02ds | %s | %s | `%s` |\n' "$learner" "$ways" "$iters" \
    $((secs / 60)) $((secs % 60)) "$res" "$commit" "$cmd" >> "$out"
done

#!/usr/bin/env bash
# MAML++ on Omniglot 5-way 1-shot with every switch on, then with each of its
# switches turned off in turn, at the same budget; and Reptile. Each run's
# best validation checkpoint is evaluated on 600 fixed test episodes.
# Usage: bench/scripts/omniglot_mamlpp.sh RESULTS.md MAMLPP_ITERATIONS REPTILE_ITERATIONS
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
iters=$2
riters=$3
data=${MELA_DATA:-../shared/data/omniglot}
# a frozen binary (and the commit it was built from) keeps long queues consistent
mela=${MELA_BIN:-build/mela}
if [ -x runs/bin/mela ] && [ -z "${MELA_BIN:-}" ]; then mela=runs/bin/mela; fi
commit=$(cat runs/bin/COMMIT 2>/dev/null || git rev-parse --short HEAD)
if [ ! -s "$out" ]; then
  {
    echo "# MAML++ (with ablations) and Reptile on Omniglot 5-way 1-shot (Vinyals split, 600 test episodes)"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, OpenBLAS kernels: $($mela --version | sed 's/.*kernels: \(.*\))/\1/')"
    echo
    echo "| run | meta-iterations | wall | test accuracy (95% CI) | commit | command |"
    echo "| --- | ---: | ---: | --- | --- | --- |"
  } > "$out"
fi
run() { # label iterations args...
  local label=$1 n=$2; shift 2
  # MELA_DEADLINE (seconds since the epoch): start no run after it
  if [ -n "${MELA_DEADLINE:-}" ] && [ "$(date +%s)" -ge "$MELA_DEADLINE" ]; then
    echo "| $label | $n | - | not run (out of time) | | |" >> "$out"
    return 0
  fi
  local dir=runs/omniglot-$label
  local cmd="$mela train $* --ways 5 --iterations $n --val-every $((n / 4)) --data-dir $data --out-dir $dir"
  local start=$(date +%s)
  $cmd --report 50 > $dir.log 2>&1 || { tail -5 $dir.log; exit 1; }
  local secs=$(( $(date +%s) - start ))
  local res=$(grep '^test:' $dir.log | sed 's/test: accuracy \([0-9.]*%\) +- \([0-9.]*%\).*/\1 ± \2/')
  printf '| %s | %s | %dm%02ds | %s | %s | `%s` |\n' "$label" "$n" $((secs / 60)) $((secs % 60)) "$res" \
    "$commit" "$cmd" >> "$out"
}
run reptile-5w1s "$riters" --learner reptile
run mamlpp-5w1s "$iters" --learner mamlpp
run mamlpp-no-lslr "$iters" --learner mamlpp --lslr 0
run mamlpp-no-msl "$iters" --learner mamlpp --msl 0
run mamlpp-no-bnwb "$iters" --learner mamlpp --bnwb 0
run mamlpp-no-da "$iters" --learner mamlpp --da-until 0
run mamlpp-no-cosine "$iters" --learner mamlpp --cosine-lr 0

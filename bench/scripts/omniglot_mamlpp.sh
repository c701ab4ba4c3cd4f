#!/usr/bin/env bash
# Meta-trains MAML++ / Reptile runs on Omniglot (Vinyals split), each
# "label iterations [mela train options...]" given, validating four times per
# run, and evaluates each run's best validation checkpoint on 600 fixed test
# episodes (15 queries per class). Appends one markdown row per run.
# Usage: bench/scripts/omniglot_mamlpp.sh RESULTS.md "label iterations options..." ...
#   e.g. bench/scripts/omniglot_mamlpp.sh bench/results/omniglot-mamlpp.md \
#          "mamlpp-5w1s 1000 --learner mamlpp --ways 5" \
#          "mamlpp-5w1s-no-msl 1000 --learner mamlpp --ways 5 --msl 0"
# MELA_DEADLINE (seconds since the epoch): start no run after it.
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
    echo "# MAML++ (with ablations) and Reptile on Omniglot (Vinyals split, 600 test episodes)"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, OpenBLAS kernels: $($mela --version | sed 's/.*OpenBLAS kernels: \([^;)]*\).*/\1/')"
    echo
    echo "| run | meta-iterations | wall | test accuracy (95% CI) | commit | command |"
    echo "| --- | ---: | ---: | --- | --- | --- |"
  } > "$out"
fi
for spec in "$@"; do
  read -r label n args <<< "$spec"
  if [ -n "${MELA_DEADLINE:-}" ] && [ "$(date +%s)" -ge "$MELA_DEADLINE" ]; then
    echo "| $label | $n | - | not run (out of time) | | |" >> "$out"
    continue
  fi
  dir=runs/omniglot-$label
  # shellcheck disable=SC2086 # args are words of options
  cmd="$mela train $args --iterations $n --val-every $((n / 4)) --data-dir $data --out-dir $dir"
  start=$(date +%s)
  $cmd --report 50 > $dir.log 2>&1 || { tail -5 $dir.log; exit 1; }
  secs=$(( $(date +%s) - start ))
  res=$(grep '^test:' $dir.log | sed 's/test: accuracy \([0-9.]*%\) +- \([0-9.]*%\).*/\1 ± \2/')
  printf '| %s | %s | %dm%02ds | %s | %s | `%s` |\n' "$label" "$n" $((secs / 60)) $((secs % 60)) "$res" \
    "$commit" "$cmd" >> "$out"
done

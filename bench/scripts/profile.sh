#!/usr/bin/env bash
# Where each learner's training time goes: `mela train --profile` on a short
# run of every learner (Omniglot from ../shared, sinusoids), each printing
# the loop's phases (tasks, forward and backward, optimiser, validation) and
# its top graph ops. Usage: bench/scripts/profile.sh [ITERATIONS] > bench/results/profile.md
set -euo pipefail
cd "$(dirname "$0")/../.."
iters=${1:-20}
mela=build/mela
data=../shared/data/omniglot
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "# Where the time goes, learner by learner"
echo
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $($mela --version | sed 's/^mela [^ ]* //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "Command: \`bench/scripts/profile.sh $iters\`: each row is \`mela train ... --iterations $iters --val-every $iters --val-episodes 20 --profile\` (2 threads); op times are summed over the training executors of both threads, so they add up to more than the wall time of the forward and backward phase."
runs=(
  "protonet 20-way 5-shot, 15 queries|--learner protonet --ways 20 --shots 5 --queries 15"
  "matchnet 20-way 1-shot|--learner matchnet --ways 20"
  "siamese, 128 pairs|--learner siamese --augment 0"
  "maml 5-way 1-shot|--learner maml --ways 5"
  "fomaml 20-way 1-shot|--learner fomaml --ways 20"
  "maml 20-way 1-shot|--learner maml --ways 20"
  "metasgd 5-way 1-shot|--learner metasgd --ways 5"
  "anil 5-way 1-shot|--learner anil --ways 5"
  "mamlpp 5-way 1-shot (first-order phase)|--learner mamlpp --ways 5"
  "mamlpp 5-way 1-shot (exact)|--learner mamlpp --ways 5 --da-until 0"
  "reptile 5-way|--learner reptile --ways 5"
  "maml on sinusoids|--dataset sinusoid"
)
for r in "${runs[@]}"; do
  name=${r%%|*}
  opts=${r#*|}
  n=$iters
  case $opts in *sinusoid*) n=$((iters * 100)) ;; esac
  echo
  echo "## $name"
  echo
  echo "\`mela train $opts --iterations $n --profile\`"
  echo
  echo '```'
  # shellcheck disable=SC2086
  $mela train $opts --iterations $n --val-every $n --val-episodes 20 --test-episodes 20 --report $n \
    --data-dir "$data" --out-dir "$out/run" --overwrite --profile 2>&1 | sed -n '/^profile:/,/^test:/p' | grep -v '^test:'
  echo '```'
done

#!/usr/bin/env bash
# Trains the metric learners on Omniglot with their papers' settings for a
# given number of updates, evaluates the best validation checkpoint on fixed
# test episodes (1,000 for the Vinyals split as Snell et al. do, 600 for
# Lake/Koch), and appends one markdown row per evaluation.
# Usage: bench/scripts/omniglot_metric.sh RESULTS.md ITERATIONS
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
iters=$2
data=${MELA_DATA:-../shared/data/omniglot}
# a frozen binary (and the commit it was built from) keeps long queues consistent
mela=${MELA_BIN:-build/mela}
if [ -x runs/bin/mela ] && [ -z "${MELA_BIN:-}" ]; then mela=runs/bin/mela; fi
commit=$(cat runs/bin/COMMIT 2>/dev/null || git rev-parse --short HEAD)
if [ ! -s "$out" ]; then
  {
    echo "# Metric learners on Omniglot"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, OpenBLAS kernels: $($mela --version | sed 's/.*kernels: \(.*\))/\1/')"
    echo
    echo "| learner | trained | updates | wall | tested | test accuracy (95% CI) | commit | commands |"
    echo "| --- | --- | ---: | ---: | --- | --- | --- | --- |"
  } > "$out"
fi
row() { # learner trained iters secs tested result cmd
  printf '| %s | %s | %s | %dm%02ds | %s | %s | %s | `%s` |\n' "$1" "$2" "$3" $(($4 / 60)) $(($4 % 60)) \
    "$5" "$6" "$commit" "$7" >> "$out"
}
acc() { sed -n 's/.*accuracy \([0-9.]*%\) +- \([0-9.]*%\).*/\1 ± \2/p' | tail -1; }
train() { # name args...
  local dir=runs/omniglot-$1; shift
  local cmd="$mela train $* --iterations $iters --data-dir $data --out-dir $dir"
  local start=$(date +%s)
  $cmd --report 100 > $dir.log 2>&1 || { tail -5 $dir.log; exit 1; }
  secs=$(( $(date +%s) - start ))
  tcmd=$cmd
}
# Prototypical Networks, 1-shot: trained 60-way, tested 5-way and 20-way
train protonet-1s --learner protonet --test-ways 5 --test-episodes 1000
row protonet "60-way 1-shot" "$iters" "$secs" "5-way 1-shot" "$(grep '^test:' runs/omniglot-protonet-1s.log | acc)" "$tcmd"
for spec in "20 1" "5 5" "20 5"; do
  read -r w k <<< "$spec"
  e="$mela eval runs/omniglot-protonet-1s/best.safetensors --test-ways $w --test-shots $k --episodes 1000"
  row protonet "60-way 1-shot" "$iters" 0 "$w-way $k-shot" "$($e | acc)" "$e"
done
# Matching Networks, 5-way 1-shot
train matchnet-5w1s --learner matchnet --ways 5 --test-episodes 1000
row matchnet "5-way 1-shot" "$iters" "$secs" "5-way 1-shot" "$(grep '^test:' runs/omniglot-matchnet-5w1s.log | acc)" "$tcmd"
for spec in "20 1" "5 5" "20 5"; do
  read -r w k <<< "$spec"
  e="$mela eval runs/omniglot-matchnet-5w1s/best.safetensors --test-ways $w --test-shots $k --episodes 1000"
  row matchnet "5-way 1-shot" "$iters" 0 "$w-way $k-shot" "$($e | acc)" "$e"
done
# Siamese networks, Koch's protocol: 20-way within-alphabet one-shot on Lake's alphabets
train siamese-lake --learner siamese
row siamese "pairs (Lake split)" "$iters" "$secs" "20-way 1-shot within alphabet" "$(grep '^test:' runs/omniglot-siamese-lake.log | acc)" "$tcmd"
for w in 5 20; do # Vinyals split episodes, as in the MAML paper's table
  e="$mela eval runs/omniglot-siamese-lake/best.safetensors --split vinyals --test-ways $w --test-queries 15"
  row siamese "pairs (Lake split)" "$iters" 0 "$w-way 1-shot (Vinyals test split)" "$($e | acc)" "$e"
done

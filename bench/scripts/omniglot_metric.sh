#!/usr/bin/env bash
# Trains the metric learners on Omniglot with their papers' settings for a
# given number of updates, evaluates the best validation checkpoint on fixed
# test episodes (1,000 for the Vinyals split as Snell et al. do, 600 for
# Lake/Koch), and appends one markdown row per evaluation.
# Usage: bench/scripts/omniglot_metric.sh RESULTS.md ITERATIONS [RUN...]
#   RUN: protonet-1s protonet-5s matchnet matchnet-scaled matchnet-scaled-20w siamese
#   (default: protonet-1s matchnet siamese). MELA_BIN/MELA_COMMIT: the binary and
#   its commit; MELA_THREADS: threads of every training and evaluation.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
iters=$2
shift 2
runs=${*:-protonet-1s matchnet siamese}
data=${MELA_DATA:-../shared/data/omniglot}
# a frozen binary (and the commit it was built from) keeps long queues consistent
mela=${MELA_BIN:-build/mela}
if [ -x runs/bin/mela ] && [ -z "${MELA_BIN:-}" ]; then mela=runs/bin/mela; fi
commit=${MELA_COMMIT:-$(cat runs/bin/COMMIT 2>/dev/null || git rev-parse --short HEAD)}
if [ ! -s "$out" ]; then
  {
    echo "# Metric learners on Omniglot"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, OpenBLAS kernels: $($mela --version | sed 's/.*OpenBLAS kernels: \([^;)]*\).*/\1/')"
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
  local cmd="$mela train $* ${MELA_THREADS:+--threads $MELA_THREADS} --iterations $iters --data-dir $data --out-dir $dir"
  local start=$(date +%s)
  $cmd --report 100 > $dir.log 2>&1 || { tail -5 $dir.log; exit 1; }
  secs=$(( $(date +%s) - start ))
  tcmd=$cmd
}
evals() { # name trained-as specs... : rows for the other ways/shots of a trained model
  local name=$1 as=$2; shift 2
  for spec in "$@"; do
    read -r w k <<< "$spec"
    e="$mela eval runs/omniglot-$name/best.safetensors --test-ways $w --test-shots $k --episodes 1000${MELA_THREADS:+ --threads $MELA_THREADS}"
    row "${name%%-*}" "$as" "$iters" 0 "$w-way $k-shot" "$($e | acc)" "$e"
  done
}
for run in $runs; do
  case $run in
  protonet-1s) # Prototypical Networks, 1-shot: trained 60-way, tested 5-way and 20-way
    train protonet-1s --learner protonet --test-ways 5 --test-episodes 1000
    row protonet "60-way 1-shot" "$iters" "$secs" "5-way 1-shot" "$(grep '^test:' runs/omniglot-protonet-1s.log | acc)" "$tcmd"
    evals protonet-1s "60-way 1-shot" "20 1" "5 5" "20 5" ;;
  protonet-5s) # Snell et al.'s 5-shot model: 60-way 5-shot training episodes
    train protonet-5s --learner protonet --shots 5 --test-ways 5 --test-episodes 1000
    row protonet "60-way 5-shot" "$iters" "$secs" "5-way 5-shot" "$(grep '^test:' runs/omniglot-protonet-5s.log | acc)" "$tcmd"
    evals protonet-5s "60-way 5-shot" "20 5" ;;
  matchnet) # Matching Networks, 5-way 1-shot, Vinyals et al.'s plain cosine attention
    train matchnet-5w1s --learner matchnet --ways 5 --test-episodes 1000
    row matchnet "5-way 1-shot" "$iters" "$secs" "5-way 1-shot" "$(grep '^test:' runs/omniglot-matchnet-5w1s.log | acc)" "$tcmd"
    evals matchnet-5w1s "5-way 1-shot" "20 1" "5 5" "20 5" ;;
  matchnet-scaled) # the same with a learned scale of the cosine (starting at 10)
    train matchnet-scaled --learner matchnet --ways 5 --scale 10 --learn-scale 1 --test-episodes 1000
    row matchnet "5-way 1-shot, learned scale" "$iters" "$secs" "5-way 1-shot" "$(grep '^test:' runs/omniglot-matchnet-scaled.log | acc)" "$tcmd"
    evals matchnet-scaled "5-way 1-shot, learned scale" "20 1" "5 5" "20 5" ;;
  matchnet-scaled-20w) # trained on 20-way 1-shot episodes, learned scale
    train matchnet-scaled-20w --learner matchnet --ways 20 --scale 10 --learn-scale 1 --test-episodes 1000
    row matchnet "20-way 1-shot, learned scale" "$iters" "$secs" "20-way 1-shot" "$(grep '^test:' runs/omniglot-matchnet-scaled-20w.log | acc)" "$tcmd"
    evals matchnet-scaled-20w "20-way 1-shot, learned scale" "5 1" "5 5" "20 5" ;;
  siamese) # Siamese networks, Koch's protocol: 20-way within-alphabet one-shot on Lake's alphabets
    train siamese-lake --learner siamese
    row siamese "pairs (Lake split)" "$iters" "$secs" "20-way 1-shot within alphabet" "$(grep '^test:' runs/omniglot-siamese-lake.log | acc)" "$tcmd"
    for w in 5 20; do # Vinyals split episodes, as in the MAML paper's table
      e="$mela eval runs/omniglot-siamese-lake/best.safetensors --split vinyals --test-ways $w --test-queries 15${MELA_THREADS:+ --threads $MELA_THREADS}"
      row siamese "pairs (Lake split)" "$iters" 0 "$w-way 1-shot (Vinyals test split)" "$($e | acc)" "$e"
    done ;;
  *) echo "unknown run '$run'" >&2; exit 2 ;;
  esac
done

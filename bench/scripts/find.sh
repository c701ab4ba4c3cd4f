#!/usr/bin/env bash
# One-shot detection on seeded Omniglot scenes (bench/bench_find.c): mela find
# with a ProtoNet checkpoint against the NCC template matcher, on the same
# scenes of the evaluation alphabets, 5-class and 20-class 1-shot supports.
# Thresholds are chosen first on scenes of the background alphabets (the
# training alphabets), never on the evaluation scenes.
# Usage: bench/scripts/find.sh CHECKPOINT [SCENES] [TUNE_SCENES]
#   (defaults 1000 and 200; prints everything, the numbers go to
#   bench/results/find.md by hand with the commit)
# The checkpoint of bench/results/find.md:
#   build/mela train --learner protonet --split lake --iterations 1000 --threads 1 \
#     --val-every 500 --out-dir runs/protonet-find2
set -euo pipefail
cd "$(dirname "$0")/../.."
ck=$1
scenes=${2:-1000}
tune=${3:-200}
bench=${MELA_BENCH_FIND:-build/bench_find}
echo "== thresholds: $tune scenes of the background alphabets (seed 2)"
$bench "$ck" --set background --seed 2 --scenes "$tune" --ways 5
for ways in 5 20; do
  echo "== $ways-class 1-shot supports: $scenes scenes of the evaluation alphabets (seed 1)"
  $bench "$ck" --seed 1 --scenes "$scenes" --ways "$ways" "${@:4}"
done

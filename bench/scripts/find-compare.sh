#!/usr/bin/env bash
# Plain against scene-trained ProtoNets for `mela find` (bench/results/find.md):
# both checkpoints on the same seeded scenes, the NCC template matcher in
# every run. First SCENES_TUNE scenes of the background (training) alphabets,
# seed 2, 5 classes, whose threshold sweep chooses each method's threshold;
# then SCENES scenes of the evaluation alphabets, seed 1, 5 and 20 classes,
# and SCENES_TUNE scenes of evaluation-alphabet distractors only (seed 3).
# Usage: bench/scripts/find-compare.sh PLAIN.safetensors SCENE.safetensors \
#          [SCENES [SCENES_TUNE [JOBS]]]       (defaults 1000, 200, 2)
# Each bench_find searches JOBS scenes at once (one thread each); the
# numbers do not depend on JOBS. MELA_BENCH_FIND names the binary and
# MELA_OMNIGLOT the folder of the archives (defaults build/bench_find and
# ../shared/data/omniglot); OUT (default bench/runs/find-compare) receives
# one file per run and 6 drawn scenes of each model.
set -euo pipefail
plain=$1 scene=$2
scenes=${3:-1000} tune=${4:-200} jobs=${5:-2}
bench=${MELA_BENCH_FIND:-build/bench_find}
data=${MELA_OMNIGLOT:-../shared/data/omniglot}
out=${OUT:-bench/runs/find-compare}
mkdir -p "$out"
run() { # NAME ARGS...: one bench_find run into $out/NAME.md
  local name=$1
  shift
  echo "== $name: bench_find $*" | tee "$out/$name.md"
  local t0=$SECONDS
  $bench "$@" --data-dir "$data" --jobs "$jobs" >> "$out/$name.md" 2> "$out/$name.log"
  echo "($((SECONDS - t0)) s wall, $jobs jobs)" >> "$out/$name.md"
  cat "$out/$name.md"
}
for m in plain scene; do
  ck=$plain
  [ $m = scene ] && ck=$scene
  run tune-$m "$ck" --set background --seed 2 --scenes "$tune" --ways 5
done
eval_run() { # WAYS MODEL
  local ways=$1 m=$2 ck=$plain draw=()
  [ $m = scene ] && ck=$scene
  [ "$ways" = 5 ] && draw=(--draw "$out/draw-$m" 6)
  run eval$ways-$m "$ck" --seed 1 --scenes "$scenes" --ways "$ways" "${draw[@]}"
}
eval_run 5 plain
eval_run 5 scene
# scenes of distractors only (no support class): "nothing found" is right
for m in plain scene; do
  ck=$plain
  [ $m = scene ] && ck=$scene
  run distractors-$m "$ck" --seed 3 --scenes "$tune" --ways 5 --p-target 1e-9
done
eval_run 20 plain
eval_run 20 scene

#!/usr/bin/env bash
# Plain against scene-trained ProtoNets for `mela find` (bench/results/find.md):
# both checkpoints on the same seeded scenes, the NCC template matcher in
# every run. First SCENES_TUNE scenes of the background (training) alphabets,
# seed 2, 5 classes, whose threshold sweep chooses each method's threshold;
# then SCENES scenes of the evaluation alphabets, seed 1, 5 and 20 classes.
# Usage: bench/scripts/find-compare.sh PLAIN.safetensors SCENE.safetensors \
#          [SCENES [SCENES_TUNE [JOBS]]]       (defaults 1000, 200, 2)
# Each bench_find searches JOBS scenes at once (one thread each); the
# numbers do not depend on JOBS. MELA_BENCH_FIND names the binary and
# MELA_OMNIGLOT the folder of the archives (defaults build/bench_find and
# ../shared/data/omniglot); OUT (default bench/runs/find-compare) receives
# one file per run and 6 drawn scenes of the scene-trained model.
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
for ways in 5 20; do
  for m in plain scene; do
    ck=$plain
    draw=()
    if [ $m = scene ]; then
      ck=$scene
      [ "$ways" = 5 ] && draw=(--draw "$out/draw" 6)
    fi
    [ $m = plain ] && [ "$ways" = 5 ] && draw=(--draw "$out/draw-plain" 6)
    run eval$ways-$m "$ck" --seed 1 --scenes "$scenes" --ways "$ways" "${draw[@]}"
  done
done

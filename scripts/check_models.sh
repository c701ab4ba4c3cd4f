#!/usr/bin/env bash
# check_models.sh MELA MODELS_DIR DATA_DIR [EPISODES] - every shipped model
# (each row of MODELS_DIR/index.tsv) loads by name and scores, on the first
# EPISODES (300) of its fixed test episodes, within its recorded interval:
# |acc - recorded| <= ci(EPISODES) + recorded ci. Exit 77 (CTest: skipped)
# when the Omniglot archives are not in DATA_DIR. The episodes run on up to
# 4 threads (the machine's cores; the results do not depend on it).
set -euo pipefail
mela=$1 dir=$2 data=$3 episodes=${4:-300}
if [ ! -f "$data/images_background.zip" ] || [ ! -f "$data/images_evaluation.zip" ]; then
  echo "check_models: no Omniglot archives in $data: skipped"
  exit 77
fi
[ -f "$dir/index.tsv" ] || { echo "check_models: $dir/index.tsv is missing"; exit 1; }
threads=$(nproc 2>/dev/null || echo 1)
[ "$threads" -le 4 ] || threads=4
fail=0 n=0
while IFS=$'\t' read -r name file learner trained tested eps acc ci opts; do
  case "$name" in ''|'#'*) continue ;; esac
  n=$((n + 1))
  # shellcheck disable=SC2086
  out=$(MELA_MODELS="$dir" "$mela" eval "$name" $opts --episodes "$episodes" --threads "$threads" --data-dir "$data" 2>&1) || {
    echo "FAIL $name ($tested): mela eval failed: $out"; fail=1; continue; }
  line=$(printf '%s\n' "$out" | grep 'accuracy' | tail -1)
  got=$(printf '%s\n' "$line" | sed -E 's/.*accuracy ([0-9.]+)% \+- ([0-9.]+)%.*/\1 \2/')
  if awk -v g="$got" -v a="$acc" -v c="$ci" 'BEGIN { split(g, x, " "); d = x[1] - a; if (d < 0) d = -d;
         exit !(d <= x[2] + c) }'; then
    echo "ok   $name ($tested): $line; recorded $acc% +- $ci% ($eps episodes)"
  else
    echo "FAIL $name ($tested): $line; recorded $acc% +- $ci% ($eps episodes)"
    fail=1
  fi
done < "$dir/index.tsv"
[ "$n" -gt 0 ] || { echo "check_models: $dir/index.tsv lists no models"; exit 1; }
exit $fail

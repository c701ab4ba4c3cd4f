#!/usr/bin/env bash
# same_bits.sh OLD_MELA NEW_MELA - trains every learner briefly with two
# builds of mela on the same seeds (sinusoids; Omniglot from ../shared) and
# compares the tensors of every best/last checkpoint byte for byte, and the
# printed test results. For refactorings that must not change a single bit.
# Needs python3 (to read the safetensors). Prints a markdown report.
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$(realpath "${1:?usage: same_bits.sh OLD_MELA NEW_MELA}")
new=$(realpath "${2:?usage: same_bits.sh OLD_MELA NEW_MELA}")
data=$(realpath ../shared/data/omniglot)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runs=(
  "sin|--dataset sinusoid --iterations 2000 --val-every 500 --test-episodes 100"
  "sinrep|--learner reptile --dataset sinusoid --iterations 500 --val-every 250 --test-episodes 50"
  "protonet|--learner protonet --ways 20 --iterations 12 --val-every 6 --val-episodes 8 --test-episodes 20"
  "matchnet|--learner matchnet --iterations 12 --val-every 6 --val-episodes 8 --test-episodes 20 --learn-scale 1 --scale 5"
  "siamese|--learner siamese --iterations 12 --val-every 6 --val-episodes 8 --test-episodes 20"
  "mamlpp|--learner mamlpp --iterations 12 --val-every 6 --val-episodes 8 --test-episodes 20 --meta-batch 4"
  "reptile|--learner reptile --iterations 12 --val-every 6 --val-episodes 8 --test-episodes 20 --test-steps 5"
  "metasgd|--learner metasgd --iterations 12 --val-every 6 --val-episodes 8 --test-episodes 20 --meta-batch 4"
  "anil|--learner anil --ways 20 --iterations 12 --val-every 6 --val-episodes 8 --test-episodes 20 --meta-batch 4"
  "fomaml|--learner fomaml --iterations 12 --val-every 6 --val-episodes 8 --test-episodes 20 --meta-batch 4 --threads 1"
)
echo "| run | options | test result (old) | test result (new) | tensors |"
echo "| --- | --- | --- | --- | --- |"
for r in "${runs[@]}"; do
  name=${r%%|*}
  opts=${r#*|}
  for side in old new; do
    bin=$old; [ $side = new ] && bin=$new
    # shellcheck disable=SC2086
    "$bin" train $opts --data-dir "$data" --out-dir "$work/$side/$name" > "$work/$side-$name.log" 2>&1 ||
      { cat "$work/$side-$name.log" >&2; exit 1; }
  done
  same=$(python3 - "$work/old/$name" "$work/new/$name" <<'PY'
import json, struct, sys
def tensors(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    return {k: d[v['data_offsets'][0]:v['data_offsets'][1]] for k, v in h.items() if k != '__metadata__'}
ok = all(tensors(f"{sys.argv[1]}/{f}") == tensors(f"{sys.argv[2]}/{f}")
         for f in ('best.safetensors', 'last.safetensors'))
print('identical' if ok else 'DIFFERENT')
PY
)
  to=$(tail -n 1 "$work/old-$name.log" | sed 's/^test: //')
  tn=$(tail -n 1 "$work/new-$name.log" | sed 's/^test: //')
  echo "| $name | \`$opts\` | $to | $tn | $same |"
done

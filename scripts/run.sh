#!/usr/bin/env bash
# run.sh - builds mela and runs its main job: MAML meta-training on
# sinusoid regression (needs no data; Finn et al.'s network and settings,
# 20,000 meta-iterations), then, where the Omniglot archives are found
# (../shared/data/omniglot, or $MELA_OMNIGLOT), first-order MAML on Omniglot
# 5-way 1-shot for 1,000 meta-iterations (each into runs/, replacing the
# previous run there), then the shipped MAML model (models/) evaluated by name.
# Each run ends with its test result on the fixed test tasks (mean and 95%
# confidence interval).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
build/mela train --dataset sinusoid --iterations 20000 --report 2000 --out-dir runs/sinusoid --overwrite
omni=${MELA_OMNIGLOT:-../shared/data/omniglot}
if [ -f "$omni/images_background.zip" ]; then
  build/mela train --learner fomaml --ways 5 --iterations 1000 --data-dir "$omni" --out-dir runs/omniglot-fomaml --overwrite
  # a trained model that ships with mela, used by name: its test episodes, and
  # a picture of three of them (support row, queries right and wrong)
  build/mela models
  build/mela eval omniglot-maml-5w1s --episodes 100 --show 3 --png runs/omniglot-maml-5w1s.png --data-dir "$omni"
else
  echo "run.sh: no Omniglot archives in $omni (set MELA_OMNIGLOT, or fetch them with"
  echo "  build/mela data fetch omniglot --dir $omni); skipping the Omniglot runs"
fi

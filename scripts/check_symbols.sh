#!/usr/bin/env bash
# check_symbols.sh LIB - fails unless every symbol LIB (libmela.so) defines
# for other programs is a public mela_ name (the rest is hidden: see
# include/mela.h), and the public API is there (mela_version,
# mela_learner_new, mela_run_train...).
set -euo pipefail
lib=${1:?usage: check_symbols.sh path/to/libmela.so}
syms=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v -x -e _init -e _fini || true)
bad=$(grep -v '^mela_' <<<"$syms" || true)
if [ -n "$bad" ]; then
  echo "$lib exports names without the mela_ prefix:" >&2
  echo "$bad" | sed 's/^/  /' >&2
  exit 1
fi
for want in mela_version mela_graph_new mela_learner_new mela_learner_step mela_run_train \
            mela_tasks_new mela_checkpoint_save; do
  grep -qx "$want" <<<"$syms" || { echo "$lib does not export $want" >&2; exit 1; }
done
echo "$lib: $(wc -l <<<"$syms") symbols, all mela_"

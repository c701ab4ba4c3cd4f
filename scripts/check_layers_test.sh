#!/usr/bin/env bash
# check_layers_test.sh - tests scripts/check_layers.sh on tiny fake trees:
# one that keeps the rules must pass, and each tree with one bad include
# must fail with that include's line (a check that never fails checks
# nothing).
set -euo pipefail
check="$(cd "$(dirname "$0")" && pwd)/check_layers.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A tree with the includes the real one has (and may get: data/tasks.c).
good="$tmp/good"
mkdir -p "$good"/src/{kernels,core,nn,data,io,learn,cli} "$good/include"
put() { printf '%s\n' "${@:2}" >"$good/$1"; }
put include/mela.h '#include <stddef.h>'
put include/mela_nn.h '#include "mela.h"'
put include/mela_data.h '#include "mela.h"'
put include/mela_io.h '#include "mela.h"'
put include/mela_learn.h '#include "mela.h"' '#include "mela_nn.h"'
put src/kernels/kernels.h '#include <stddef.h>'
put src/kernels/gemm.c '#include <cblas.h>' '#include "kernels/kernels.h"' '// #include "mela.h"'
put src/core/graph_impl.h '#include "mela.h"'
put src/core/plan.c '#include "core/graph_impl.h"' '#  include "kernels/kernels.h"'
put src/nn/model.c '#include "mela_nn.h"'
put src/data/tasks.c '#include "mela_data.h"' '#include "mela.h"' '#include "core/graph_impl.h"'
put src/io/json.h '#include "mela.h"'
put src/io/metrics.c '#include "io/json.h"' '#include <mela_io.h>'
put src/learn/train.c '#include "mela_data.h"' '#include "mela_io.h"' '#include "mela_learn.h"'
put src/cli/cli.h '#include "mela.h"'
put src/cli/main.c '#include "cli/cli.h"' '#include "mela_learn.h"' '#include "core/graph_impl.h"'
mkdir -p "$good/python/tests"
put python/_mela.c '#include <Python.h>' '#include "mela_learn.h"' '#include "mela_io.h"'
put python/tests/dump.c '#include "mela_data.h"'

fails=0
if ! out=$("$check" "$good" 2>&1); then
  echo "FAIL: a tree that keeps the rules was refused:"
  echo "$out"
  fails=1
fi

# expect FILE INCLUDE-LINE MESSAGE: FILE (new or appended to) breaks a rule.
n=0
expect() {
  n=$((n + 1))
  local t="$tmp/bad$n"
  cp -r "$good" "$t"
  mkdir -p "$(dirname "$t/$1")"
  echo "$2" >>"$t/$1"
  local out
  if out=$("$check" "$t" 2>&1); then
    echo "FAIL: $1 with $2 passed the check"
    fails=1
  elif [[ $out != *"$3"* ]]; then
    echo "FAIL: $1 with $2: expected '$3', got:"
    echo "$out"
    fails=1
  fi
}
expect src/kernels/x.c '#include "core/graph_impl.h"' 'src/kernels/x.c:1: layer kernels includes core/graph_impl.h'
expect src/kernels/gemm.c '#include "mela.h"' 'src/kernels/gemm.c:4: layer kernels includes mela.h'
expect src/core/plan.c '#include "mela_nn.h"' 'src/core/plan.c:3: layer core includes mela_nn.h'
expect src/core/x.c '#include "learn/taskpool.h"' 'layer core includes learn/taskpool.h'
expect src/core/x.c '#include "../kernels/kernels.h"' 'layer core includes ../kernels/kernels.h'
expect src/nn/model.c '#include "mela_data.h"' 'layer nn includes mela_data.h'
expect src/nn/model.c '#include "io/json.h"' 'layer nn includes io/json.h'
expect src/data/tasks.c '#include "mela_io.h"' 'layer data includes mela_io.h'
expect src/data/tasks.c '#include "mela_nn.h"' 'layer data includes mela_nn.h'
expect src/data/tasks.c '#include <mela_learn.h>' 'layer data includes mela_learn.h'
expect src/io/metrics.c '#include "data/data_internal.h"' 'layer io includes data/data_internal.h'
expect src/io/metrics.c '#include "mela_learn.h"' 'layer io includes mela_learn.h'
expect src/learn/train.c '#include "cli/cli.h"' 'layer learn includes cli/cli.h'
expect include/mela_nn.h '#include "mela_learn.h"' 'include/mela_nn.h:2: layer nn includes mela_learn.h'
expect include/mela_io.h '#include "io/json.h"' 'layer io includes io/json.h (a public header'
expect include/mela_extra.h '#include "mela.h"' 'include/mela_extra.h: not in a known layer'
expect python/_mela.c '#include "learn/learner.h"' 'python/_mela.c:4: python includes learn/learner.h'
expect python/tests/dump.c '#include "core/sys.h"' 'python includes core/sys.h'
expect src/util/x.c '#include "mela.h"' 'src/util/x.c: not in a known layer'
[ "$fails" -eq 0 ] && echo "check_layers: the good tree passes, $n bad trees fail as they should"
exit $fails

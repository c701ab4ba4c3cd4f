#!/usr/bin/env bash
# mpi.sh - the distributed runs (CTest mpi_bits, mpi_failure; built with MPI).
#   tests/mpi.sh bits DIST_TRAIN   theta after every update of exact MAML,
#       Reptile and ProtoNets (tasks spread), of ProtoNets, Matching and
#       Siamese networks on one episode (its images spread), and the spread
#       evaluation, are the same bits alone and under mpirun -np 2 and -np 3
#   tests/mpi.sh tune MELA         mela tune's trials spread over processes:
#       the same records and winner as one process
#   tests/mpi.sh failure MELA      a rank that fails (a missing checkpoint or
#       a bad option on rank 1 only) ends the whole job with its message, a
#       NaN every rank meets is said once, and a rank killed from outside ends
#       the job with an error; none hangs
# CI runs as root: Open MPI then wants its consent, and oversubscription
# lets 3 processes share fewer cores.
set -euo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
mpirun=("${MELA_MPIRUN:-mpirun}" --oversubscribe)
tmp=$(mktemp -d /tmp/mela-mpi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "mpi.sh: $*" >&2; exit 1; }

# job_fails WHAT PATTERN... -- COMMAND...: the job must end (no hang) with a
# non-zero status, its output holding every pattern.
job_fails() {
  local what=$1 pats=() rc
  shift
  while [ "$1" != "--" ]; do pats+=("$1"); shift; done
  shift
  set +e
  timeout 120 "$@" >"$tmp/out" 2>&1
  rc=$?
  set -e
  [ $rc -ne 124 ] || { cat "$tmp/out"; fail "$what: the job hung"; }
  [ $rc -ne 0 ] || { cat "$tmp/out"; fail "$what: the job succeeded"; }
  for p in "${pats[@]}"; do
    grep -q -- "$p" "$tmp/out" || { cat "$tmp/out"; fail "$what: '$p' is not in the output"; }
  done
  echo "$what: the job ended (status $rc) with its message"
}

case "$1" in
bits)
  bin=$2
  "$bin" "$tmp/p1" | grep -q "1 process, done" || fail "one process failed"
  # 6 trainings of 6 updates and a test line each
  [ "$(grep -c ' theta ' "$tmp/p1")" = 36 ] && [ "$(grep -c ' test acc ' "$tmp/p1")" = 6 ] ||
    fail "one process: expected 36 updates and 6 tests in $tmp/p1"
  for P in 2 3; do
    timeout 300 "${mpirun[@]}" -np $P "$bin" "$tmp/p$P" >"$tmp/out$P" 2>&1 ||
      { cat "$tmp/out$P"; fail "-np $P failed"; }
    grep -q "$P processes, done" "$tmp/out$P" || { cat "$tmp/out$P"; fail "-np $P: not $P processes"; }
    if ! cmp "$tmp/p1" "$tmp/p$P"; then
      diff "$tmp/p1" "$tmp/p$P" | head -20
      fail "-np $P differs from one process"
    fi
    echo "-np $P: the same bits as one process ($(wc -l <"$tmp/p$P") lines)"
  done
  ;;
tune)
  # mela tune's trials spread over 3 processes: the same records (scores to
  # the last digit; the seconds aside) and the same winner as one process
  mela=$2
  space=(--dataset sinusoid --vary 'inner_lr log 0.001 0.1' --vary 'meta_batch choice 5 10 25'
         --trials 9 --min-iterations 10 --max-iterations 90 --val-episodes 10 --workers 1 --threads 1)
  "$mela" tune "${space[@]}" --out-dir "$tmp/t1" >"$tmp/out1" 2>&1 || { cat "$tmp/out1"; fail "tune alone failed"; }
  timeout 300 "${mpirun[@]}" -np 3 "$mela" tune "${space[@]}" --out-dir "$tmp/t3" >"$tmp/out3" 2>&1 ||
    { cat "$tmp/out3"; fail "tune -np 3 failed"; }
  records() { sed 's/"seconds":[^,]*,//' "$1/trials.jsonl" | sort; }
  [ "$(records "$tmp/t1" | wc -l)" -ge 9 ] || fail "tune alone: fewer than 9 records"
  diff <(records "$tmp/t1") <(records "$tmp/t3") || fail "tune -np 3: other records than one process"
  diff <(grep -v '^#' "$tmp/t1/best.conf") <(grep -v '^#' "$tmp/t3/best.conf") ||
    fail "tune -np 3: another winner"
  [ "$(grep -c '^trial' "$tmp/out3")" = "$(grep -c '^trial' "$tmp/out1")" ] || fail "tune -np 3: reported twice?"
  echo "tune -np 3: the same $(records "$tmp/t1" | wc -l) records and winner as one process"
  ;;
failure)
  mela=$2
  "$mela" train --dataset sinusoid --learner maml --iterations 4 --val-every 2 --threads 1 \
    --out-dir "$tmp/run" >/dev/null || fail "training the checkpoint failed"
  ok="$tmp/run/best.safetensors" bad="$tmp/missing.safetensors"
  job_fails "a failing rank (agreed on)" "missing.safetensors" "rank 1 of 2" -- \
    "${mpirun[@]}" -np 1 "$mela" eval "$ok" --threads 1 : -np 1 "$mela" eval "$bad" --threads 1
  # rank 1 fails before the library sees it (a bad option): it ends the job
  job_fails "a failing rank (its own)" "episodes" "rank 1 of 2 failed" -- \
    "${mpirun[@]}" -np 1 "$mela" eval "$ok" --threads 1 : -np 1 "$mela" eval "$ok" --episodes 0
  # a failure every rank meets (a NaN: every rank holds the same theta): said once
  job_fails "a NaN on every rank" "loss is nan" -- "${mpirun[@]}" -np 2 "$mela" train --dataset sinusoid \
    --learner maml --iterations 50 --inner-lr 100 --threads 1 --out-dir "$tmp/nan"
  [ "$(grep -c "loss is nan" "$tmp/out")" = 1 ] || { cat "$tmp/out"; fail "the NaN is not said once"; }
  # a rank killed from outside: the job ends with an error
  "${mpirun[@]}" -np 2 "$mela" train --dataset sinusoid --learner maml --iterations 100000000 \
    --val-every 0 --threads 1 --out-dir "$tmp/killed" >"$tmp/out2" 2>&1 &
  job=$!
  victim=
  for _ in $(seq 100); do
    victim=$(pgrep -P "$job" -f "mela train" | tail -1 || true)
    [ -n "$victim" ] && grep -q "^iter" "$tmp/out2" && break
    sleep 0.2
  done
  [ -n "$victim" ] || { kill "$job"; fail "no rank process found"; }
  kill -9 "$victim"
  set +e
  timeout 60 tail --pid="$job" -f /dev/null
  waited=$?
  wait "$job"
  rc=$?
  set -e
  [ $waited -eq 0 ] || { kill -9 "$job"; fail "the job did not end after a rank was killed"; }
  [ $rc -ne 0 ] || fail "the job ended with status 0 after a rank was killed"
  echo "a killed rank: the job ended (status $rc)"
  ;;
*) fail "usage: mpi.sh bits DIST_TRAIN | tune MELA | failure MELA" ;;
esac

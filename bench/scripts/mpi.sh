#!/usr/bin/env bash
# mpi.sh - bench/results/mpi.md: MAML meta-iterations spread over 1, 2 and 4
# MPI processes on this machine (shared memory, Open MPI's default on one
# machine, and TCP over loopback), and the collectives of an update alone.
#   bench/scripts/mpi.sh > bench/results/mpi.md      (after a build in build/)
#   bench/scripts/mpi.sh metric >> bench/results/mpi.md   the metric learners'
#       one episode per update, its images spread (a section of its own)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
b=build/bench_mpi
# yield: a process waiting in MPI gives its core away instead of spinning;
# Open MPI does so by itself only when it knows the cores are oversubscribed
# (P > cores), and this machine's two cores are busy with other jobs
mpirun=(mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 1)
spin=(mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 0)
if [ "${1:-}" = metric ]; then
  echo
  echo "## Metric learners: the images of one episode spread"
  echo
  echo "Commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ). $(nproc) CPU cores;"
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the start."
  echo
  echo "Command: \`bench/scripts/mpi.sh metric\`; each row one run of"
  echo "\`[mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 -np P] build/bench_mpi --learner L --reps N\`:"
  echo "each learner's defaults (meta-batch 1, Omniglot Conv-4 with max-pool, random images), one thread"
  echo "per process unless said; columns as above (tasks/s: episodes/s). 'whole episode' (--whole): one"
  echo "process through the whole episode's graph instead of blocks of 8 images, what the blocks cost."
  echo
  echo "| run | processes | threads each | meta-batch | updates/s | episodes/s | theta MB | KB sent / update | ms in MPI / update (mean) | (slowest rank) |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for L in protonet matchnet siamese; do
    reps=3
    [ $L = matchnet ] && reps=20
    $b --learner $L --reps $reps --whole
    $b --learner $L --reps $reps
    $b --learner $L --reps $reps --threads 2 --whole
    $b --learner $L --reps $reps --threads 2
    for P in 2 4; do
      "${mpirun[@]}" -np $P $b --learner $L --reps $reps
    done
  done
  echo
  echo "Load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  exit 0
fi
echo "# MPI: meta-iterations spread over processes (issue 17)"
echo
echo "Commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ). $(nproc) CPU cores;"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the start. $(build/mela --version)."
echo
echo "Command: \`bench/scripts/mpi.sh > bench/results/mpi.md\`; each row one run of"
echo "\`[mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 1|0 -np P [--mca btl self,tcp]] build/bench_mpi --reps N [--threads T] [--comm]\`"
echo "(yield 1 unless the row says 'spinning')."
echo
echo "MAML 5-way 1-shot, meta-batch 32, Omniglot Conv-4 (28x28, random images), 1 inner step:"
echo "the paper's setting. Each process 1 thread unless said. Updates/s: mela_learner_step calls"
echo "per second after 2 warm-up ones. KB sent: payload bytes all processes hand to MPI per update"
echo "(mela_dist_counters; a broadcast counted once). ms in MPI: seconds per update inside MPI calls,"
echo "waiting for slower ranks included (mean and slowest rank). 'collectives only': the same"
echo "collectives with no computation (--comm): what the communication itself costs."
echo
echo "| run | transport | processes | threads each | meta-batch | updates/s | tasks/s | theta MB | KB sent / update | ms in MPI / update (mean) | (slowest rank) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row() { # transport, then the command
  local t=$1; shift
  "$@" | sed "s/^| \([^|]*\) |/| \1 | $t |/"
}
row "one process" $b --reps 10 --threads 1
row "one process" $b --reps 10 --threads 2
for P in 2 4; do
  row "shared memory" "${mpirun[@]}" -np $P $b --reps 10
done
for P in 2 4; do
  row "TCP loopback" "${mpirun[@]}" -np $P --mca btl self,tcp $b --reps 10
done
for P in 2 4; do
  row "shared memory" "${mpirun[@]}" -np $P $b --reps 200 --comm
  row "TCP loopback" "${mpirun[@]}" -np $P --mca btl self,tcp $b --reps 200 --comm
done
row "shared memory, spinning" "${spin[@]}" -np 2 $b --reps 10
row "shared memory, spinning" "${spin[@]}" -np 2 $b --reps 200 --comm
echo
echo "Load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."

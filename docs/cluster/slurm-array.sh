#!/usr/bin/env bash
# A sweep over a Slurm job array: each array task runs one part of the sweep
# (`--shard K/N`) into a folder of its own, and `continuum sweep merge` joins
# the parts when every task has finished.
#
#   sbatch --array=1-8 docs/cluster/slurm-array.sh scenarios/sweeps/conflict-strategies.ron parts
#   # when all tasks are done (or: sbatch --dependency=afterok:JOBID ...):
#   continuum sweep merge parts/part-* --out conflicts
#
# A task that is preempted or requeued picks up its part where it stopped
# (--resume skips the runs it finished). Set CONTINUUM to the binary's path if
# it is not on the PATH of the compute nodes.
#
#SBATCH --job-name=continuum-sweep
#SBATCH --cpus-per-task=4
#SBATCH --time=02:00:00
#SBATCH --output=continuum-sweep-%A_%a.log
set -euo pipefail

sweep=${1:?usage: sbatch --array=1-N slurm-array.sh SWEEP.ron [PARTS_FOLDER]}
parts=${2:-sweep-parts}
task=${SLURM_ARRAY_TASK_ID:?not an array task: submit with sbatch --array=1-N}
tasks=${SLURM_ARRAY_TASK_COUNT:?not an array task: submit with sbatch --array=1-N}
# Array ids may start at 0 or 1; parts are numbered from 1.
first=${SLURM_ARRAY_TASK_MIN:-1}
part=$((task - first + 1))

exec "${CONTINUUM:-continuum}" sweep "$sweep" \
    --shard "$part/$tasks" \
    --out "$parts/part-$part" \
    --jobs "${SLURM_CPUS_PER_TASK:-1}" \
    --resume --quiet

#!/bin/bash
# Grade a batch of submissions as a Slurm array (one task per shard) and merge the shards.
#
#   slurm/submit.sh [options] SUBMISSIONS OUTDIR [-- grade options ...]
#
#   --shards N           array tasks (default 4); shard I goes to OUTDIR/shard_I
#   --jobs J             submissions graded at once per task = --cpus-per-task (default 2)
#   --timeout S          seconds per submission (default 1800)        } passed to grade, and
#   --memory-limit M     memory per submission, e.g. 3GiB (default 4GiB) } they size --time/--mem
#   --only I[,I...]      submit only these shards (rerun a failed or cancelled one; what it
#                        finished before is kept), then merge again
#   --no-merge           no merge job
#   --partial            merge even if a shard failed (its students are listed, not graded)
#
# Run it on the login node (from any folder: it uses the checkout it lives in, which the nodes
# must see at the same path). It sets up the virtual environment once
# (.ci/venv.sh; or DLCV_VENV=/path/to/venv), counts each shard's submissions, derives the task
# resources from the limits (python -m autograder.batch.shards; see slurm/grade_shards.sbatch):
#   --cpus-per-task=J  --mem=J x memory + 2 GiB  --time=ceil(S/J) x (timeout + 120 s) + 10 min
# and submits the array, then the merge job with --dependency=afterany on it. The result is
# OUTDIR/merged (grades.csv, tests.csv, feedback/, gradebook.db); logs are in OUTDIR/logs.
# sbatch reads SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_QOS ... from the environment.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
shards=4 jobs=2 timeout=1800 memory=4GiB only="" merge=1 partial=()
while [ $# -gt 0 ]; do
  case $1 in
    --shards) shards=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --memory-limit) memory=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --no-merge) merge=0; shift ;;
    --partial) partial=(--partial); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) break ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "usage: $0 [options] SUBMISSIONS OUTDIR [-- grade options]   (see --help)" >&2
  exit 2
fi
submissions=$(realpath "$1") outdir=$(realpath -m "$2")
shift 2
[ "${1:-}" = "--" ] && shift
cd "$repo"
export DLCV_REPO=$repo
export DLCV_VENV=${DLCV_VENV:-$(bash .ci/venv.sh | tail -n 1)}
mkdir -p "$outdir/logs"

resources=$("$DLCV_VENV/bin/python" -m autograder.batch.shards "$submissions" --shard-count "$shards" \
  --jobs "$jobs" --timeout "$timeout" --memory-limit "$memory" "$@")
minutes=$(awk '$1 == "time_minutes" {print $2}' <<<"$resources")
mem_mb=$(awk '$1 == "mem_mb" {print $2}' <<<"$resources")
sizes=$(awk '$1 == "sizes" {$1 = ""; print substr($0, 2)}' <<<"$resources")

array=${only:-0-$((shards - 1))}
array_job=$(sbatch --parsable --array="$array" --cpus-per-task="$jobs" --mem="${mem_mb}M" --time="$minutes" \
  --output="$outdir/logs/%x-%A_%a.out" "$here/grade_shards.sbatch" \
  "$submissions" "$outdir" "$shards" --timeout "$timeout" --memory-limit "$memory" "$@")
array_job=${array_job%%;*}
echo "array job $array_job: shards $array of $shards (submissions per shard: $sizes), each" \
  "--cpus-per-task=$jobs --mem=${mem_mb}M --time=${minutes}"
if [ "$merge" = 1 ]; then
  merge_job=$(sbatch --parsable --dependency="afterany:$array_job" --output="$outdir/logs/%x-%j.out" \
    "$here/merge.sbatch" "$outdir" "$shards" "${partial[@]}")
  merge_job=${merge_job%%;*}
  echo "merge job $merge_job (afterany:$array_job): $outdir/merged"
fi

#!/usr/bin/env bash
# Runs a memfabric sweep on a Slurm cluster: a job array whose task K runs
# `memfabric sweep STUDY --shard K/N`, then a merge job that depends on every
# task (afterok) and writes the merged result, identical to an unsharded run.
#
#   scripts/slurm-sweep.sh [options] STUDY OUT
#
#   --shards N        array tasks (shards), default 4
#   --max-array M     largest array the cluster accepts (default: the cluster's
#                     MaxArraySize); more shards are split over several arrays
#   --jobs J          threads per task (default: the task's CPUs, SLURM_CPUS_PER_TASK or 1)
#   --cpus C          --cpus-per-task of each array task (default 1)
#   --memfabric PATH  the memfabric binary (default: memfabric on PATH)
#   --wait            wait for the merge job; exit 1 if it did not complete
#
# Shard folders and logs go to OUT.shards/, the merged result to OUT.
# Extra sbatch options (partition, account, time) can be given in SBATCH_*
# environment variables, which sbatch reads itself.
set -euo pipefail

shards=4
max_array=""
jobs=""
cpus=1
memfabric=memfabric
wait=false
args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --shards) shards=$2; shift 2 ;;
    --max-array) max_array=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --memfabric) memfabric=$2; shift 2 ;;
    --wait) wait=true; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) args+=("$1"); shift ;;
    esac
done
if [ ${#args[@]} -ne 2 ]; then
    echo "usage: $0 [--shards N] [--max-array M] [--jobs J] [--cpus C] [--memfabric PATH] [--wait] STUDY OUT" >&2
    exit 2
fi
case "$shards" in ''|*[!0-9]*|0) echo "--shards must be a positive integer, not '$shards'" >&2; exit 2 ;; esac
study=$(realpath "${args[0]}")
out=$(realpath -m "${args[1]}")
[ -f "$study" ] || { echo "$study: no such study file" >&2; exit 2; }
memfabric=$(command -v "$memfabric" || true)
[ -n "$memfabric" ] || { echo "memfabric binary not found (--memfabric PATH)" >&2; exit 2; }
# Check the study before submitting anything (located errors, exit 2).
"$memfabric" sweep "$study" --dry-run --shard "0/$shards" >/dev/null

if [ -z "$max_array" ]; then
    max_array=$(scontrol show config | awk '$1 == "MaxArraySize" {print $3}')
    max_array=${max_array:-1001}
fi
case "$max_array" in ''|*[!0-9]*|0) echo "--max-array must be a positive integer" >&2; exit 2 ;; esac
work="$out.shards"
mkdir -p "$work/logs"
thread_arg='--jobs ${SLURM_CPUS_PER_TASK:-1}'
[ -n "$jobs" ] && thread_arg="--jobs $jobs"

array_ids=()
offset=0
while [ "$offset" -lt "$shards" ]; do
    count=$((shards - offset))
    [ "$count" -gt "$max_array" ] && count=$max_array
    id=$(sbatch --parsable --job-name=memfabric-sweep --cpus-per-task="$cpus" \
        --array="0-$((count - 1))" --output="$work/logs/shard-%A_%a.out" \
        --export="ALL,MF_OFFSET=$offset" \
        --wrap "k=\$((MF_OFFSET + SLURM_ARRAY_TASK_ID)); exec '$memfabric' sweep '$study' --shard \$k/$shards --out '$work'/shard-\$k $thread_arg --no-plots")
    array_ids+=("${id%%;*}")
    offset=$((offset + count))
done
dirs=""
for k in $(seq 0 $((shards - 1))); do dirs="$dirs '$work/shard-$k'"; done
dependency="afterok$(printf ':%s' "${array_ids[@]}")"
merge_id=$(sbatch --parsable --job-name=memfabric-merge --dependency="$dependency" \
    --output="$work/logs/merge-%j.out" \
    --wrap "exec '$memfabric' merge $dirs --out '$out'")
merge_id=${merge_id%%;*}
echo "array jobs: ${array_ids[*]} (${#array_ids[@]} arrays for $shards shards, at most $max_array tasks each)"
echo "merge job: $merge_id -> $out"

if $wait; then
    while :; do
        state=$(scontrol show job "$merge_id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
        case "$state" in
        COMPLETED) echo "merge job $merge_id completed"; exit 0 ;;
        FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE)
            echo "merge job $merge_id ended $state; logs in $work/logs" >&2; exit 1 ;;
        PENDING)
            # A dependency that can never be met (a failed shard) stays pending.
            if scontrol show job "$merge_id" | grep -q 'Reason=DependencyNeverSatisfied'; then
                echo "a shard failed: the merge job cannot run; logs in $work/logs" >&2
                scancel "$merge_id" || true
                exit 1
            fi ;;
        esac
        sleep 1
    done
fi

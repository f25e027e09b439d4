#!/usr/bin/env bash
# Text classification epoch time (docs/benchmarks.md#text-classification): one epoch of SST-2 training
# for non-private training, DP-SGD and DP-FP, the three alternating for ROUNDS rounds in one run, with
# each mode's ratio to non-private training. Same model, data, batch and learning rate for all three;
# the noise multiplier is fixed (0.6), not calibrated, so that every mode runs the same number of steps.
# Usage: bench/text.sh [path/to/dpformer] [data folder]     Environment: ROUNDS (2), THREADS (0 = all)
set -euo pipefail
BIN=${1:-build/dpformer}
DATA=${2:-../shared/data}/sst2
ROUNDS=${ROUNDS:-2}
[ -f "$DATA/train.tsv" ] || { echo "bench/text.sh: $DATA/train.tsv not found" >&2; exit 2; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%MZ)  $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, threads ${THREADS:-0}"
common="--train $DATA/train.tsv --tokenizer words --max-len 48 --d-model 64 --n-heads 2 --n-layers 2 --dropout 0.1
        --epochs 1 --batch-size 1024 --lr 1e-3 --threads ${THREADS:-0} --no-progress"
for r in $(seq 1 "$ROUNDS"); do
  for mode in nonprivate dp-sgd dp-fp; do
    case $mode in
      nonprivate) f="" ;;
      dp-sgd) f="--dp --noise-multiplier 0.6 --max-grad-norm 1" ;;
      dp-fp) f="--dpfp --noise-multiplier 0.6 --dpfp-clip 1 --micro-batches 2" ;;
    esac
    s=$("$BIN" train-text $common $f --out "$OUT/$mode" 2>/dev/null | sed -n 's/.*(\([0-9.]*\) s per epoch).*/\1/p')
    echo "round $r  $mode  $s s/epoch"
  done
done | tee "$OUT/times"
awk '{ t[$3] += $4; n[$3]++ } END { for (m in t) printf "%-10s  mean %6.1f s/epoch  ratio to non-private %.2f\n", m,
     t[m] / n[m], t[m] / t["nonprivate"] }' "$OUT/times" | sort -k8 -n

#!/usr/bin/env bash
# SST-2 text classification (docs/experiments/dpfp.md): non-private training, DP-SGD and DP-FP at
# epsilon 3 and 8 (delta 1e-6, one labelled sentence = the privacy unit), the same hyper-parameter grid
# for every mode (learning rate x batch size, chosen on dev accuracy, never on test), several seeds.
# Usage: experiments/sst2.sh [dpformer binary] [data folder] [output folder]
# Environment: SEEDS ("1 2 3"), LRS ("1e-3 3e-3"), BATCHES ("512"), EPOCHS (3), MAX_LEN (48),
#              TOKENIZER (words), D_MODEL (64), N_LAYERS (2), POOL (first),
#              MODES ("np dpsgd-3 dpsgd-8 dpfp-3 dpfp-8"), MICRO_BATCHES (2), DPFP_CLIP (1).
# The reduced protocol of docs/experiments/dpfp.md is given there (fewer seeds, epochs and a shorter window).
# Then: python3 experiments/summarize_sst2.py OUTPUT_FOLDER
set -euo pipefail
BIN=${1:-build/dpformer}
DATA=${2:-../shared/data}/sst2
OUT=${3:-runs/sst2}
SEEDS=${SEEDS:-1 2 3}
LRS=${LRS:-1e-3 3e-3}
BATCHES=${BATCHES:-512}
EPOCHS=${EPOCHS:-3}
MAX_LEN=${MAX_LEN:-48}
MODES=${MODES:-np dpsgd-3 dpsgd-8 dpfp-3 dpfp-8}
mkdir -p "$OUT"
common="--train $DATA/train.tsv --dev $DATA/dev.tsv --test $DATA/test.tsv --tokenizer ${TOKENIZER:-words}
        --max-len $MAX_LEN --d-model ${D_MODEL:-64} --n-heads 2 --n-layers ${N_LAYERS:-2} --pool ${POOL:-first}
        --dropout 0.1 --epochs $EPOCHS --no-progress"
for mode in $MODES; do
  case $mode in
    np) priv="" ;;
    dpsgd-*) priv="--dp --target-epsilon ${mode#dpsgd-} --delta 1e-6 --max-grad-norm 1" ;;
    dpfp-*) priv="--dpfp --target-epsilon ${mode#dpfp-} --delta 1e-6 --dpfp-clip ${DPFP_CLIP:-1} --micro-batches ${MICRO_BATCHES:-2}" ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  for lr in $LRS; do for bs in $BATCHES; do for seed in $SEEDS; do
    run="$mode.lr$lr.bs$bs.s$seed"
    [ -f "$OUT/$run.log" ] && grep -q "^model:" "$OUT/$run.log" && continue   # done already
    echo "== $run"
    if [ -d "$OUT/$run/checkpoints" ]; then   # an interrupted run: continue it
      "$BIN" train-text --resume "$OUT/$run" > "$OUT/$run.log" 2>&1 ||
          { echo "   FAILED (exit $?): see $OUT/$run.log"; continue; }
    else
      "$BIN" train-text $common $priv --lr "$lr" --batch-size "$bs" --seed "$seed" --out "$OUT/$run" > "$OUT/$run.log" 2>&1 ||
          { echo "   FAILED (exit $?): see $OUT/$run.log"; continue; }
    fi
    grep -E "accuracy|per epoch" "$OUT/$run.log" | sed 's/^/   /'
  done; done; done
done

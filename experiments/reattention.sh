#!/usr/bin/env bash
# Re-Attention experiment (docs/experiments/reattention.md): the DP Transformer without and with
# Re-Attention at epsilon 5, 8 and 10 (delta 1e-6, privacy unit one user), several seeds, the same
# hyper-parameter grid for both variants (learning rate x expected batch size, chosen on validation
# NDCG@10, never on test), next to non-private training and popularity.
# Usage: experiments/reattention.sh [dpformer binary] [data folder] [output folder]
# Environment (defaults = the full protocol for a bigger machine):
#   DATASETS ("amazon-games amazon-beauty"), EPS ("5 8 10"), SEEDS ("1 2 3"), LRS ("1e-3 3e-3"),
#   BATCHES ("512 1024"), EPOCHS (40), MAX_LEN (50), ITEM_FREQ (private), NONPRIVATE (1: also the
#   non-private reference run, 20 epochs; 0: skip it).
# Reduced protocol for a 2-core machine in under an hour (docs/experiments/reattention.md):
#   DATASETS=amazon-beauty EPS="8" SEEDS="1 2" LRS=3e-3 BATCHES=1024 EPOCHS=5
# Then: python3 experiments/summarize_reattention.py OUTPUT_FOLDER
set -euo pipefail
BIN=${1:-build/dpformer}
DATA=${2:-../shared/data}
OUT=${3:-runs/reattention}
DATASETS=${DATASETS:-amazon-games amazon-beauty}
EPS=${EPS:-5 8 10}
SEEDS=${SEEDS:-1 2 3}
LRS=${LRS:-1e-3 3e-3}
BATCHES=${BATCHES:-512 1024}
EPOCHS=${EPOCHS:-40}
MAX_LEN=${MAX_LEN:-50}
mkdir -p "$OUT"
file_of() { case $1 in amazon-games) echo "$DATA/amazon-games/interactions.txt" ;; *) echo "$DATA/$1/sequences.txt" ;; esac; }
for ds in $DATASETS; do
  common="--data $(file_of "$ds") --max-len $MAX_LEN --d-model 64 --n-layers 2 --n-heads 1 --dropout 0.2 --no-progress --no-checkpoints"
  for eps in $EPS; do for variant in dp ra; do for lr in $LRS; do for bs in $BATCHES; do for seed in $SEEDS; do
    run="$ds.eps$eps.$variant.lr$lr.bs$bs.s$seed"
    [ -f "$OUT/$run/metrics.jsonl" ] && grep -q '"final":true' "$OUT/$run/metrics.jsonl" && continue
    extra=""; [ $variant = ra ] && extra="--reattention --item-freq ${ITEM_FREQ:-private}"
    echo "== $run"
    "$BIN" train $common --dp --target-epsilon "$eps" --delta 1e-6 --max-grad-norm 1 --epochs "$EPOCHS" \
        --lr "$lr" --batch-size "$bs" --seed "$seed" $extra --out "$OUT/$run" > "$OUT/$run.log" 2>&1
    grep -E "^  test  " "$OUT/$run.log" | sed 's/^/   /'
  done; done; done; done; done
  run="$ds.nonprivate.s1"
  if [ "${NONPRIVATE:-1}" = 1 ] && ! grep -qs '"final":true' "$OUT/$run/metrics.jsonl"; then
    echo "== $run"
    "$BIN" train $common --epochs 20 --lr 1e-3 --batch-size 256 --out "$OUT/$run" > "$OUT/$run.log" 2>&1
  fi
done

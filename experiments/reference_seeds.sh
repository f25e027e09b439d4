#!/usr/bin/env bash
# The DP-SGD setting of the PyTorch reference (../shared/docs/reference-values.md: amazon-games, ε 8,
# δ 1e-6, Poisson sampling with expected batch 1024, C 1, lr 3e-3, dropout 0, 40 epochs, d 64, 2
# layers, 1 head, L 50) with several seeds, to tell seed noise from a systematic difference
# (docs/experiments/sharing.md#the-reference-setting-with-three-seeds).
# The reference keeps the epoch with the best validation NDCG@10; dpformer under DP keeps the last
# (the printed ε covers only that). Each run here keeps the best epoch (--select-best, as the reference
# did) and its final checkpoint, whose current parameters are the last epoch's: `dpformer eval` on that
# checkpoint gives the last epoch's test metrics of the same run, so both selections are compared on the
# same trajectory.
# Usage: experiments/reference_seeds.sh [dpformer binary] [data folder] [output folder] [seed]
# Environment: EPOCHS (40), THREADS (1), DROPOUT (0), EPS (8). Run one seed per call (they are
# independent; run them side by side, one thread each), then
#   python3 experiments/summarize_reference.py OUTPUT_FOLDER
set -euo pipefail
BIN=${1:-build/dpformer}
DATA=${2:-../shared/data}
OUT=${3:-runs/reference}
SEED=${4:-1}
EPOCHS=${EPOCHS:-40} THREADS=${THREADS:-1} DROPOUT=${DROPOUT:-0} EPS=${EPS:-8}
name="games-eps$EPS-s$SEED"
data="$DATA/amazon-games/interactions.txt"
mkdir -p "$OUT"
if ! { [ -f "$OUT/$name/metrics.jsonl" ] && grep -q '"final":true' "$OUT/$name/metrics.jsonl"; }; then
  echo "== $name: training"
  "$BIN" train --data "$data" --max-len 50 --d-model 64 --n-layers 2 --n-heads 1 --dropout "$DROPOUT" \
    --dp --target-epsilon "$EPS" --delta 1e-6 --batch-size 1024 --max-grad-norm 1 --lr 3e-3 --epochs "$EPOCHS" \
    --seed "$SEED" --select-best --keep-checkpoints 1 --threads "$THREADS" --no-progress --out "$OUT/$name" \
    > "$OUT/$name.log" 2>&1
fi
# the last epoch's parameters: the current ones of the run's final checkpoint
ckpt=$(ls "$OUT/$name/checkpoints"/ckpt-*.safetensors | tail -1)
"$BIN" eval --model "$ckpt" --data "$data" --threads "$THREADS" --json > "$OUT/$name.last-test.json"
echo "== $name: done"

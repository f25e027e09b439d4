#!/usr/bin/env bash
# Embedding sharing under DP (docs/experiments/sharing.md): the tied model (item embedding shared by the
# input and the output layer; Phantom Clipping) against the untied one (a separate output layer; ghost
# clipping) and an untied model of half the width (about the same number of parameters), all under
# DP-SGD with the same budget, grid and epochs, next to non-private references.
# Usage: experiments/sharing.sh [dpformer binary] [data folder] [output folder]
# Environment (defaults = the full protocol of the issue, for a bigger machine or the GPU):
#   DATASETS ("amazon-games amazon-beauty"), EPS ("5 8"), SEEDS ("1 2 3"), EPOCHS (40), LR (3e-3),
#   BATCH (1024), NONPRIVATE (1), THREADS (0 = all cores), VARIANTS ("tied untied untied-half").
# Reduced protocol recorded for a 2-core machine: EPOCHS=10 SEEDS="1" (same for every variant).
# Then: python3 experiments/summarize_sharing.py OUTPUT_FOLDER
set -euo pipefail
BIN=${1:-build/dpformer}
DATA=${2:-../shared/data}
OUT=${3:-runs/sharing}
DATASETS=${DATASETS:-amazon-games amazon-beauty}
EPS=${EPS:-5 8}
SEEDS=${SEEDS:-1 2 3}
EPOCHS=${EPOCHS:-40}
LR=${LR:-3e-3}
BATCH=${BATCH:-1024}
NONPRIVATE=${NONPRIVATE:-1}
THREADS=${THREADS:-0}
VARIANTS=${VARIANTS:-tied untied untied-half}
mkdir -p "$OUT"
file_of() { case $1 in amazon-games) echo "$DATA/amazon-games/interactions.txt" ;; *) echo "$DATA/$1/sequences.txt" ;; esac; }
variant_flags() {
  case $1 in
    tied) echo "--d-model 64" ;;                 # Phantom Clipping (clip mode auto picks it)
    untied) echo "--d-model 64 --untied" ;;      # a separate output layer: ghost clipping
    untied-half) echo "--d-model 32 --untied" ;; # half the width: about the tied model's parameter count
  esac
}
run() { # name, flags...
  local name=$1; shift
  if [ -f "$OUT/$name/metrics.jsonl" ] && grep -q '"final":true' "$OUT/$name/metrics.jsonl"; then
    echo "== $name: done already"; return
  fi
  echo "== $name: $BIN train $*"
  local start; start=$(date +%s)
  "$BIN" train "$@" --out "$OUT/$name" > "$OUT/$name.log" 2>&1 || { echo "   FAILED (see $OUT/$name.log)"; return; }
  echo "   done in $(( $(date +%s) - start )) s"
}
for ds in $DATASETS; do
  common="--data $(file_of "$ds") --max-len 50 --n-layers 2 --n-heads 1 --dropout 0.2 --threads $THREADS --no-progress --no-checkpoints"
  for seed in $SEEDS; do
    for v in $VARIANTS; do
      if [ "$NONPRIVATE" = 1 ]; then
        run "$ds-np-$v-s$seed" $common $(variant_flags $v) --seed "$seed" --epochs "$EPOCHS" --batch-size 256 --lr 1e-3
      fi
      for eps in $EPS; do
        run "$ds-eps$eps-$v-s$seed" $common $(variant_flags $v) --seed "$seed" --epochs "$EPOCHS" --dp \
          --target-epsilon "$eps" --delta 1e-6 --batch-size "$BATCH" --lr "$LR" --max-grad-norm 1
      done
    done
  done
done

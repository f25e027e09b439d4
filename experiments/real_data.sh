#!/usr/bin/env bash
# Real-data runs recorded in docs/results.md: non-private training and DP-SGD on amazon-beauty and
# amazon-games with the papers' model (d 64, 2 layers, 1 head, L 50, tied embedding).
# Usage: experiments/real_data.sh [dpformer binary] [data folder] [output folder] [runs...]
# Runs: np-beauty np-games dp-games-8 dp-beauty-8 dp-games-5 dp-games-10 dp-beauty-5 dp-beauty-10
set -euo pipefail
BIN=${1:-build/dpformer}
DATA=${2:-../shared/data}
OUT=${3:-runs/real}
shift $(( $# < 3 ? $# : 3 )) || true
RUNS=${*:-np-beauty np-games dp-games-8 dp-beauty-8 dp-games-5 dp-games-10 dp-beauty-5 dp-beauty-10}
mkdir -p "$OUT"
beauty="--data $DATA/amazon-beauty/sequences.txt"
games="--data $DATA/amazon-games/interactions.txt"
common="--max-len 50 --d-model 64 --n-layers 2 --n-heads 1 --no-progress"
for run in $RUNS; do
  case $run in
    np-beauty) args="$beauty --epochs 20 --batch-size 256 --lr 1e-3 --dropout 0.2" ;;
    np-games)  args="$games --epochs 12 --batch-size 256 --lr 1e-3 --dropout 0.2" ;;
    dp-*)      ds=${run#dp-}; ds=${ds%-*}; eps=${run##*-}
               [ "$ds" = games ] && d="$games" || d="$beauty"
               args="$d --dp --target-epsilon $eps --delta 1e-6 --batch-size 1024 --max-grad-norm 1 --lr 3e-3 --dropout 0.2 --epochs ${DP_EPOCHS:-20}" ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
  esac
  echo "== $run: $BIN train $args $common --out $OUT/$run"
  start=$(date +%s)
  "$BIN" train $args $common --out "$OUT/$run" > "$OUT/$run.log" 2>&1
  echo "   done in $(( $(date +%s) - start )) s"; tail -12 "$OUT/$run.log"
done

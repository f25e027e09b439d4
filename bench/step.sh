#!/usr/bin/env bash
# Training-step benchmark, side by side on one machine: dpformer non-private vs DP-SGD (auto and
# naive clipping), then the same model in PyTorch (if Debian's python3-torch is installed), with the
# machine's SGEMM rate measured in the same run. Usage: bench/step.sh [path/to/dpformer] [shape]
# (shape: games, ml1m, both or gpt2; gpt2, GPT-2 small at batch 16, leaves out the slow naive round)
set -euo pipefail
BIN=${1:-build/dpformer}
SHAPE=${2:-both}
echo "# $(date -u +%Y-%m-%dT%H:%MZ)  $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
"$BIN" bench step --shape "$SHAPE" --variants nonprivate,auto --steps 2 --warmup 1 --rounds 3 --json
[ "$SHAPE" = gpt2 ] ||
  "$BIN" bench step --shape "$SHAPE" --variants nonprivate,naive --steps 1 --warmup 0 --rounds 1 --json | grep naive
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  for s in games ml1m gpt2; do
    [ "$SHAPE" = both ] || [ "$SHAPE" = "$s" ] || continue
    /usr/bin/python3 "$(dirname "$0")/pytorch_step.py" --shape "$s" --threads "$(nproc)" --warmup 1 --steps 2
  done
else
  echo "# PyTorch not installed (apt-get install python3-torch): baseline skipped" >&2
fi

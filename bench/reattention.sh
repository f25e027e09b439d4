#!/usr/bin/env bash
# Re-Attention's cost on the training step (Amazon-Games shape, batch 256): each variant (non-private,
# DP-SGD auto) is timed with Re-Attention off and on, the two alternating step by step in the same
# process, over 3 rounds; without and with dropout (dropout adds the mask terms of the variance track).
# OpenMP threads wait passively, so that the CPU-time ratio counts work, not spinning.
# Usage: bench/reattention.sh [path/to/dpformer]
set -euo pipefail
BIN=${1:-build/dpformer}
echo "# $(date -u +%Y-%m-%dT%H:%MZ)  $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
for p in 0 0.2; do
  OMP_WAIT_POLICY=PASSIVE "$BIN" bench step --shape games --variants nonprivate,auto --reattention \
      --dropout "$p" --steps 8 --warmup 1 --rounds 3 --json
done

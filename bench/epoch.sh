#!/usr/bin/env bash
# One real-data training epoch (docs/benchmarks.md#real-data-epoch-trimmed-windows-no-compute-on-padding):
# `dpformer train --epochs 1` non-private and DP-SGD (ε 8, δ 1e-6), each with trimmed windows (the
# default) and with --no-trim (every batch on full windows), the four taking turns for ROUNDS rounds;
# then, if PYTHON has PyTorch, bench/pytorch_step.py --data on the same file (the PyTorch model of the
# same shape on the same epoch's batches, full windows as PyTorch code runs them; its epoch time is
# estimated from PT_STEPS steps). Prints the training seconds of each epoch (metrics.jsonl's
# epoch_seconds: the epoch without validation) and the ratios.
# Usage: bench/epoch.sh [path/to/dpformer] [dataset file]
# Environment: ROUNDS (2), THREADS (2), PYTHON (/usr/bin/python3), PT_STEPS (2; 0 = no PyTorch run)
set -euo pipefail
BIN=${1:-build/dpformer}
DATA=${2:-../shared/data/amazon-games/interactions.txt}
ROUNDS=${ROUNDS:-2} THREADS=${THREADS:-2} PYTHON=${PYTHON:-/usr/bin/python3} PT_STEPS=${PT_STEPS:-2}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%MZ)  $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg);" \
     "commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown); $DATA"
common=(--data "$DATA" --epochs 1 --threads "$THREADS" --no-checkpoints --no-progress --max-eval-users 1000)
secs() { grep -o '"epoch_seconds":[0-9.]*' "$1/metrics.jsonl" | head -1 | cut -d: -f2; }
printf '%-8s %-20s %12s\n' round run s/epoch
declare -A sum
for r in $(seq "$ROUNDS"); do
    for run in nonprivate nonprivate-no-trim dp dp-no-trim; do
        flags=()
        case $run in dp*) flags+=(--dp --target-epsilon 8 --delta 1e-6) ;; esac
        case $run in *no-trim) flags+=(--no-trim) ;; esac
        "$BIN" train "${common[@]}" "${flags[@]}" --out "$TMP/$run" > "$TMP/$run.log" 2>&1 ||
            { echo "bench/epoch.sh: $run failed: $(tail -3 "$TMP/$run.log")" >&2; exit 1; }
        s=$(secs "$TMP/$run")
        sum[$run]=$(awk -v a="${sum[$run]:-0}" -v b="$s" 'BEGIN { print a + b }')
        printf '%-8s %-20s %12.1f\n' "$r" "$run" "$s"
    done
done
mean() { awk -v a="${sum[$1]}" -v n="$ROUNDS" 'BEGIN { print a / n }'; }
awk -v np="$(mean nonprivate)" -v npf="$(mean nonprivate-no-trim)" -v dp="$(mean dp)" -v dpf="$(mean dp-no-trim)" 'BEGIN {
    printf "mean s/epoch: non-private %.1f (no-trim %.1f: trimmed x%.2f), DP-SGD %.1f (no-trim %.1f: trimmed x%.2f); DP/non-private x%.2f trimmed, x%.2f no-trim\n",
        np, npf, np / npf, dp, dpf, dp / dpf, dp / np, dpf / npf }'
if [ "$PT_STEPS" -gt 0 ] && "$PYTHON" -c 'import torch' 2>/dev/null; then
    "$PYTHON" "$(dirname "$0")/pytorch_step.py" --shape games --data "$DATA" --threads "$THREADS" --warmup 0 \
        --steps "$PT_STEPS"
fi

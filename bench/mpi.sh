#!/usr/bin/env bash
# Data-parallel scaling of a DP-SGD epoch (docs/benchmarks.md#data-parallel-training-mpi): one epoch of
# `dpformer train --dp` on real data (amazon-games by default) with 1 process and with each number of
# MPI ranks in RANKS, the runs alternating for ROUNDS rounds in one go. Every configuration uses the same
# cores: a run of P ranks gives each rank CORES / P threads. Reported per configuration: the epoch's
# training time, its throughput (examples/s), the speed-up over one process and the parallel efficiency
# (speed-up / (cores used / cores of the one-process run)).
# Usage: bench/mpi.sh [path/to/dpformer] [interactions file]
# Environment: RANKS ("2"; the one-process run always runs), CORES (nproc), ROUNDS (2), MPIRUN (mpirun)
set -euo pipefail
BIN=${1:-build/dpformer}
DATA=${2:-../shared/data/amazon-games/interactions.txt}
RANKS=${RANKS:-2} CORES=${CORES:-$(nproc)} ROUNDS=${ROUNDS:-2} MPIRUN=${MPIRUN:-mpirun}
[ -f "$DATA" ] || { echo "bench/mpi.sh: $DATA not found" >&2; exit 2; }
"$BIN" --version | grep -q '^  mpi: built' || { echo "bench/mpi.sh: $BIN was built without MPI" >&2; exit 2; }
command -v "$MPIRUN" > /dev/null || { echo "bench/mpi.sh: no $MPIRUN" >&2; exit 2; }
ROOT=()
[ "$(id -u)" = 0 ] && ROOT=(--allow-run-as-root)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%MZ)  $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $("$BIN" --version | head -1), commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)"
common=(train --data "$DATA" --dp --target-epsilon 8 --delta 1e-6 --batch-size 1024 --lr 3e-3 --epochs 1 --seed 1
        --no-checkpoints --no-progress)
field() { grep '"epoch":1,' "$1" | grep -o "\"$2\":[^,}]*" | cut -d: -f2; }
for r in $(seq 1 "$ROUNDS"); do
    for p in 1 $RANKS; do
        t=$(( CORES / p )); [ "$t" -ge 1 ] || t=1
        o="$OUT/r$r-np$p"
        if [ "$p" = 1 ]; then
            "$BIN" "${common[@]}" --threads "$t" --out "$o" > "$o.log" 2>&1
        else
            over=()   # more ranks than cores only: Open MPI's oversubscribed mode yields the CPU while waiting
            [ "$p" -gt "$CORES" ] && over=(--oversubscribe)
            "$MPIRUN" "${ROOT[@]}" "${over[@]}" --bind-to none -np "$p" "$BIN" "${common[@]}" --threads "$t" \
                --out "$o" > "$o.log" 2>&1
        fi || { echo "bench/mpi.sh: the run with $p rank(s) failed:" >&2; tail -5 "$o.log" >&2; exit 1; }
        printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$p" "$t" "$(field "$o/metrics.jsonl" epoch_seconds)" \
            "$(field "$o/metrics.jsonl" examples_per_second)"
    done
done > "$OUT/times"
awk -F'\t' '{ s[$2] += $4; x[$2] += $5; n[$2]++; th[$2] = $3; printf "round %s  %d rank(s) x %d thread(s)  %.1f s/epoch  %.0f examples/s\n", $1, $2, $3, $4, $5 }
    END { base = x[1] / n[1]; c1 = th[1];
          for (p in n) printf "%d rank(s) x %d thread(s): mean %.1f s/epoch, %.0f examples/s, speed-up %.2f, efficiency %.2f\n",
              p, th[p], s[p] / n[p], x[p] / n[p], (x[p] / n[p]) / base, (x[p] / n[p]) / base / (p * th[p] / c1) | "sort -n" }' \
    "$OUT/times"

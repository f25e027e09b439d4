#!/usr/bin/env bash
# The training step on an idle and on a shared machine (docs/benchmarks.md#on-a-shared-machine): for each
# shape and each number of competing CPU-bound processes in LOADS (`bench step --compete N`), the tied
# model with nonprivate, auto, phantom and naive clipping, and the untied model with nonprivate, auto
# and ghost (ghost cannot clip a tied embedding), the variants taking turns for ROUNDS rounds. Prints
# one line per shape, load, head and variant: ms/step, the ratio to that run's non-private step, and the
# throughput kept against the idle run of the same variant, and the cores the step used (CPU time / wall
# time); under load, also what a barrier-free CPU-bound job of the same thread count kept (`bench step`
# measures it beside the variants): degrading no more than that is degrading in proportion.
# Usage: bench/sharing.sh [path/to/dpformer] [shapes]    Environment: LOADS ("0 1 2"), ROUNDS (2), STEPS (1)
set -euo pipefail
BIN=${1:-build/dpformer}
SHAPES=${2:-games ml1m}
LOADS=${LOADS:-0 1 2} ROUNDS=${ROUNDS:-2} STEPS=${STEPS:-1}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%MZ)  $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
     "commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)"
for shape in $SHAPES; do
    for load in $LOADS; do
        for head in tied untied; do
            if [ "$head" = tied ]; then v=(--variants nonprivate,auto,phantom,naive); else v=(--untied --variants nonprivate,auto,ghost); fi
            "$BIN" bench step --shape "$shape" "${v[@]}" --compete "$load" --rounds "$ROUNDS" --steps "$STEPS" --warmup 1 \
                --json | grep -E '"bench":"step(_reference)?",' | sed "s/^{/{\"head\":\"$head\",/"
        done
    done
done | tee "$OUT"
echo "# shape load head variant ms/step ratio-to-nonprivate kept-of-idle cores-used"
awk '/"bench":"step_reference"/ {
       match($0, /"compete":[0-9]*/); c = substr($0, RSTART + 10, RLENGTH - 10)
       match($0, /"kept":[0-9.]*/); k = substr($0, RSTART + 7, RLENGTH - 7)
       printf "#   load %d: the barrier-free CPU-bound reference kept %.0f%% (the proportional share)\n", c, 100 * k; next }
     { match($0, /"head":"[a-z]*"/); h = substr($0, RSTART + 8, RLENGTH - 9)
       match($0, /"shape":"[a-z0-9]*"/); s = substr($0, RSTART + 9, RLENGTH - 10)
       match($0, /"variant":"[a-z]*"/); v = substr($0, RSTART + 11, RLENGTH - 12)
       match($0, /"ms_per_step":[0-9.]*/); ms = substr($0, RSTART + 14, RLENGTH - 14)
       match($0, /"ratio_to_first":[0-9.]*/); r = substr($0, RSTART + 17, RLENGTH - 17)
       match($0, /"cpu_ms_per_step":[0-9.]*/); cpu = substr($0, RSTART + 18, RLENGTH - 18)
       match($0, /"compete":[0-9]*/); c = substr($0, RSTART + 10, RLENGTH - 10)
       k = s " " h " " v; if (c == 0) idle[k] = ms
       printf "%-6s %d %-6s %-10s %9.1f  x%.2f  %4s  %.2f\n", s, c, h, v, ms, r, (k in idle) ? sprintf("%.0f%%", 100 * idle[k] / ms) : "-", cpu / ms }' "$OUT"

#!/usr/bin/env bash
# Language models under DP (issue 15; docs/lm.md, "Public pretraining, then private fine-tuning"):
#   1. pretrain a small GPT-2-style model non-privately on public text (WikiText-2's validation split
#      and Tiny Shakespeare; WikiText-2's test split as dev), with a tied head (PRE_HEADS: also untied);
#   2. fine-tune on private text, E2E's `ref` column (devset.csv; test: testset_w_refs.csv), with DP-SGD
#      at each epsilon of EPS (delta DELTA, 1e-5 by default: E2E's 4,672 references give 1/N^1.1 =
#      9.4e-5, and 1e-5 is the smaller, stricter choice) and non-privately;
#   3. compare on test perplexity: pretrained vs random initialisation, tied head with Phantom Clipping
#      vs untied head with ghost clipping (what libraries that cannot clip a tied embedding must do: the
#      pretrained tied model untied, its head starting as a copy of the embedding, unless PRE_HEADS
#      pretrained an untied model too),
#      DP-SGD vs non-private, over SEEDS; and show a few greedy generations.
# Usage: experiments/lm.sh [dpformer binary] [data folder] [tokenizer folder] [output folder]
# Environment (defaults: the full protocol, hours on a 2-core CPU; reduce with BUDGET):
#   BUDGET (1): the fraction of the full protocol's data and epochs, 0 < BUDGET <= 1. It scales the
#     pretraining lines (all 35,238 non-empty lines), pretraining epochs (PRE_EPOCHS), E2E training references (all
#     4,672), fine-tuning epochs (FT_EPOCHS, FT_EPOCHS_NP) and test references (all 4,693), each at
#     least a floor (so that BUDGET=0.02 is a smoke test of the whole pipeline in a few CPU minutes).
#   D_MODEL (128), N_LAYERS (4), N_HEADS (4), CTX (128: the pretraining context), FT_LEN (64: the
#     fine-tuning context, cut from the pretrained model's), PRE_EPOCHS (3), PRE_LR (1e-3),
#   EPS ("3 8"), DELTA (1e-5), FT_EPOCHS (10, DP), FT_BATCH (256, DP: expected Poisson batch), FT_LR (2e-3),
#   FT_EPOCHS_NP (3), FT_BATCH_NP (32), FT_LR_NP (5e-4), CLIP (1, max grad norm),
#   SEEDS ("1"), HEADS ("tied untied"), PRE_HEADS ("tied"), INITS ("pretrained random"),
#   EPS_RANDOM (EPS: the epsilons of the runs from random initialisation), NONPRIVATE (1), THREADS (0 = all cores).
# Runs that finished already (a final line in metrics.jsonl) are kept, so the script can be run again
# to continue. Results: OUT/results.tsv (one line a run), OUT/summary.md (means over seeds),
# OUT/generations.txt.
set -euo pipefail
BIN=${1:-build/dpformer}
DATA=${2:-../shared/data}
TOK=${3:-../shared/tokenizers/gpt2}
OUT=${4:-runs/lm-experiment}
BUDGET=${BUDGET:-1}
D_MODEL=${D_MODEL:-128} N_LAYERS=${N_LAYERS:-4} N_HEADS=${N_HEADS:-4} CTX=${CTX:-128} FT_LEN=${FT_LEN:-64}
PRE_EPOCHS=${PRE_EPOCHS:-3} PRE_LR=${PRE_LR:-1e-3}
EPS=${EPS:-3 8} DELTA=${DELTA:-1e-5}
FT_EPOCHS=${FT_EPOCHS:-10} FT_BATCH=${FT_BATCH:-256} FT_LR=${FT_LR:-2e-3}
FT_EPOCHS_NP=${FT_EPOCHS_NP:-3} FT_BATCH_NP=${FT_BATCH_NP:-32} FT_LR_NP=${FT_LR_NP:-5e-4} CLIP=${CLIP:-1}
SEEDS=${SEEDS:-1} HEADS=${HEADS:-tied untied} PRE_HEADS=${PRE_HEADS:-tied} INITS=${INITS:-pretrained random}
EPS_RANDOM=${EPS_RANDOM:-$EPS} NONPRIVATE=${NONPRIVATE:-1}
THREADS=${THREADS:-0}

for f in "$DATA/wikitext-2/valid.txt" "$DATA/wikitext-2/test.txt" "$DATA/tinyshakespeare/input.txt" \
         "$DATA/e2e/devset.csv" "$DATA/e2e/testset_w_refs.csv" "$TOK/encoder.json" "$BIN"; do
    [ -e "$f" ] || { echo "lm.sh: $f is missing" >&2; exit 2; }
done
awk -v b="$BUDGET" 'BEGIN { exit !(b > 0 && b <= 1) }' || { echo "lm.sh: BUDGET must be in (0, 1]" >&2; exit 2; }
scaled() { awk -v n="$1" -v b="$BUDGET" -v lo="$2" 'BEGIN { v = int(n * b + 0.999999); if (v < lo) v = lo; print v }'; }
mkdir -p "$OUT/data"

# ---- the data: public pretraining text, private E2E references (first lines when BUDGET < 1) ----
n_pre=$(scaled 35238 400)
n_dev=$(scaled 4358 100)
n_e2e=$(scaled 4672 300)
n_test=$(scaled 4693 200)
cat "$DATA/wikitext-2/valid.txt" "$DATA/tinyshakespeare/input.txt" | grep -v '^[[:space:]]*$' |
    awk -v n="$n_pre" 'BEGIN { srand(1) } { l[NR] = $0 } END {   # an even sample of both sources
        k = 0; for (i = 1; i <= NR && k < n; i++) if (NR <= n || rand() < n / NR) { print l[i]; k++ } }' \
    > "$OUT/data/public.txt"
awk -v n="$n_dev" '/[^[:space:]]/ && ++k <= n' "$DATA/wikitext-2/test.txt" > "$OUT/data/public-dev.txt"
# CSV records may hold line breaks: keep whole records (the header, then the first N)
csv_head() { awk -v n="$2" 'BEGIN { RS = "\r?\n"; q = 0; rec = 0 }
    { line = $0; c = gsub(/"/, "\"", line); print; q = (q + c) % 2; if (!q) { if (rec++ >= n) exit } }' "$1"; }
csv_head "$DATA/e2e/devset.csv" "$n_e2e" > "$OUT/data/e2e-train.csv"
csv_head "$DATA/e2e/testset_w_refs.csv" "$n_test" > "$OUT/data/e2e-test.csv"
pre_epochs=$(scaled "$PRE_EPOCHS" 1)
ft_epochs=$(scaled "$FT_EPOCHS" 1)
ft_epochs_np=$(scaled "$FT_EPOCHS_NP" 1)
echo "lm.sh: budget $BUDGET: pretraining $n_pre lines x $pre_epochs epochs (dev $n_dev), E2E $n_e2e references" \
     "(test $n_test), DP $ft_epochs epochs, non-private $ft_epochs_np; model d $D_MODEL, $N_LAYERS layers, $N_HEADS heads"

COMMON=(--tokenizer "$TOK" --threads "$THREADS" --no-progress)
SHAPE=(--d-model "$D_MODEL" --n-layers "$N_LAYERS" --n-heads "$N_HEADS")
done_already() { [ -f "$1/metrics.jsonl" ] && grep -q '"final":true' "$1/metrics.jsonl"; }
final_num() { grep '"final":true' "$1" | grep -o "\"$2\":[^,}]*" | cut -d: -f2; }
run() { # name, train-lm flags...
    local name=$1 start
    shift
    if done_already "$OUT/$name"; then echo "== $name: done already"; return 0; fi
    echo "== $name"
    start=$(date +%s)
    if ! "$BIN" train-lm "$@" --out "$OUT/$name" > "$OUT/$name.log" 2>&1; then
        echo "   FAILED (see $OUT/$name.log)"
        return 1
    fi
    echo $(( $(date +%s) - start )) > "$OUT/$name/seconds"
    grep -E '^  (dev|test) perplexity|privacy: \(' "$OUT/$name.log" | sed 's/^/   /' || true
}

# ---- 1. public pretraining (tied; PRE_HEADS may add untied) ----
for head in $PRE_HEADS; do
    flags=()
    [ "$head" = untied ] && flags=(--untied)
    run "pre-$head" --train "$OUT/data/public.txt" --dev "$OUT/data/public-dev.txt" "${COMMON[@]}" "${SHAPE[@]}" \
        "${flags[@]}" --max-len "$CTX" --epochs "$pre_epochs" --lr "$PRE_LR" --batch-size 32 --seed 1 || continue
    [ -d "$OUT/pre-$head-hf" ] ||
        "$BIN" export --hf "$OUT/pre-$head-hf" --model "$OUT/pre-$head/model.safetensors" --tokenizer "$TOK" > /dev/null
done

# ---- 2. fine-tuning on E2E ----
FT=(--train "$OUT/data/e2e-train.csv" --test "$OUT/data/e2e-test.csv" --column ref "${COMMON[@]}")
printf 'run\tinit\thead\tclip_mode\tprivacy\ttarget_epsilon\tseed\ttest_perplexity\tepsilon\tnoise_multiplier\tsteps\tseconds\n' \
    > "$OUT/results.tsv"
record() { # name init head clip privacy target seed
    local m="$OUT/$1/metrics.jsonl"
    done_already "$OUT/$1" || return 0
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" \
        "$(final_num "$m" test_perplexity)" "$(final_num "$m" epsilon)" "$(final_num "$m" noise_multiplier)" \
        "$(final_num "$m" dp_steps)" "$(cat "$OUT/$1/seconds" 2>/dev/null || echo -)" >> "$OUT/results.tsv"
}
# zero-shot: the pretrained models on the E2E test references, before any fine-tuning
for head in $PRE_HEADS; do
    [ -d "$OUT/pre-$head-hf" ] || continue
    z=$("$BIN" eval-lm --model "$OUT/pre-$head-hf" --data "$OUT/data/e2e-test.csv" --column ref --tokenizer "$TOK" \
        --max-len "$FT_LEN" --threads "$THREADS" --json | grep -o '"perplexity":[^,}]*' | cut -d: -f2)
    printf 'pre-%s (no fine-tuning)\tpretrained\t%s\t-\tnone\t-\t-\t%s\t-\t-\t0\t-\n' "$head" "$head" "$z" >> "$OUT/results.tsv"
done
for seed in $SEEDS; do
    for init in $INITS; do
        for head in $HEADS; do
            if [ "$init" = pretrained ]; then
                if [ -d "$OUT/pre-$head-hf" ]; then
                    start=(--init "$OUT/pre-$head-hf")
                elif [ "$head" = untied ] && [ -d "$OUT/pre-tied-hf" ]; then
                    start=(--init "$OUT/pre-tied-hf" --untied)   # untied: the head starts as the embedding
                else
                    echo "== no pretrained $head model: skipped"; continue
                fi
            else
                start=("${SHAPE[@]}")
                [ "$head" = untied ] && start+=(--untied)
            fi
            clip=phantom
            [ "$head" = untied ] && clip=ghost
            if [ "$NONPRIVATE" = 1 ]; then
                name="ft-$init-$head-np-s$seed"
                run "$name" "${FT[@]}" "${start[@]}" --max-len "$FT_LEN" --epochs "$ft_epochs_np" \
                    --batch-size "$FT_BATCH_NP" --lr "$FT_LR_NP" --seed "$seed" &&
                    record "$name" "$init" "$head" - none - "$seed"
            fi
            eps_list=$EPS
            [ "$init" = random ] && eps_list=$EPS_RANDOM
            for eps in $eps_list; do
                name="ft-$init-$head-eps$eps-s$seed"
                run "$name" "${FT[@]}" "${start[@]}" --max-len "$FT_LEN" --dp --target-epsilon "$eps" --delta "$DELTA" \
                    --clip-mode "$clip" --max-grad-norm "$CLIP" --epochs "$ft_epochs" --batch-size "$FT_BATCH" \
                    --lr "$FT_LR" --seed "$seed" &&
                    record "$name" "$init" "$head" "$clip" dp-sgd "$eps" "$seed"
            done
        done
    done
done

# ---- 3. summary: mean (and spread) of the test perplexity over seeds; generations ----
awk -F'\t' 'NR > 1 && $1 !~ /no fine-tuning/ { k = $2 " | " $3 " | " $4 " | " ($5 == "none" ? "non-private" : "DP-SGD, epsilon " $6);
        n[k]++; s[k] += $8; q[k] += $8 * $8; if (!(k in lo) || $8 < lo[k]) lo[k] = $8; if (!(k in hi) || $8 > hi[k]) hi[k] = $8 }
    NR > 1 && $1 ~ /no fine-tuning/ { z[$3] = $8 }
    END { for (h in z) printf "| pretrained, no fine-tuning | %s | - | - | %.2f | | |\n", h, z[h];
          for (k in n) printf "| %s | %.2f | %.2f .. %.2f | %d |\n", k, s[k] / n[k], lo[k], hi[k], n[k] }' \
    "$OUT/results.tsv" | sort > "$OUT/summary.rows"
{
    echo "| init | head | clip mode | training | test perplexity (mean) | min .. max | seeds |"
    echo "|---|---|---|---|---|---|---|"
    cat "$OUT/summary.rows"
} > "$OUT/summary.md"
rm -f "$OUT/summary.rows"
{
    for name in $(cut -f1 "$OUT/results.tsv" | grep -- '-s[0-9]*$' | grep -- "-s$(echo $SEEDS | cut -d' ' -f1)\$"); do
        for prompt in "The Eagle is a" "There is a cheap"; do
            g=$("$BIN" generate --model "$OUT/$name/model.safetensors" --tokenizer "$TOK" --prompt "$prompt" \
                --max-tokens 24 --temperature 0 2>/dev/null | tr '\n' ' ')
            printf '%s (greedy): %s\n' "$name" "$g"
            g=$("$BIN" generate --model "$OUT/$name/model.safetensors" --tokenizer "$TOK" --prompt "$prompt" \
                --max-tokens 24 --temperature 0.8 --top-k 40 --seed 1 2>/dev/null | tr '\n' ' ')
            printf '%s (sampled, seed 1): %s\n' "$name" "$g"
        done
    done
} > "$OUT/generations.txt"
echo "lm.sh: results in $OUT/results.tsv, $OUT/summary.md, $OUT/generations.txt"
cat "$OUT/summary.md"

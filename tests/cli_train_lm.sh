#!/usr/bin/env bash
# `dpformer train-lm` on a tiny random GPT-2-family model with the GPT-2 tokenizer (../shared/tokenizers/gpt2,
# or $DPFORMER_TOKENIZERS/gpt2; skipped without it) and a few hundred generated lines: non-private
# training learns (dev perplexity far below the first epoch's and below the unigram model's); eval-lm
# of the saved model gives the run's test perplexity; truncation is counted; DP-SGD writes privacy.json
# whose epsilon `dpformer privacy --history` recomputes, with the privacy unit "one line of the
# training file"; a run killed with SIGKILL and resumed ends with a byte-identical model (non-private
# and DP-SGD, seeded); bad flags and a checkpoint of another run are refused with status 2.
# --init: a run started from the exported model (Hugging Face folder) begins at eval-lm's dev
# perplexity of that folder; DP-SGD fine-tuning from it with --train-only beats the same DP run from
# random initialisation, leaves the frozen tensors byte-identical (and the tied head with the
# embedding), and resumes after SIGKILL to the same model; missing or misshapen folders, disagreeing
# shape flags, bad --train-only lists and a resume with another --init or --train-only are refused;
# --untied with the tied folder unties it (same initial model, a head of its own, ghost clipping).
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_train_lm "$@"
SRC=${DPFORMER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TOK=${DPFORMER_TOKENIZERS:-$SRC/../shared/tokenizers}/gpt2
if [ ! -f "$TOK/encoder.json" ] || [ ! -f "$TOK/vocab.bpe" ]; then
    echo "cli_train_lm: skipped: no GPT-2 tokenizer at $TOK (set DPFORMER_TOKENIZERS)"
    exit 77
fi
cd "$TMP" || exit 1

# sentences of a small grammar: the next word is often predictable from the previous ones
gen() {
    awk -v seed="$1" -v n="$2" 'BEGIN { srand(seed);
        split("the cat|the dog|a bird|my friend|the old man|a child", S, "|");
        split("sat on|looked at|ran to|walked past|slept near", V, "|");
        split("the mat|the door|a tree|the house|the river|a red car", O, "|");
        for (i = 0; i < n; i++) {
            s = S[1 + int(rand() * 6)] " " V[1 + int(rand() * 5)] " " O[1 + int(rand() * 6)];
            if (rand() < 0.3) s = s " and then " V[1 + int(rand() * 5)] " " O[1 + int(rand() * 6)];
            print s "." } }'
}
gen 1 480 > train.txt
gen 2 60 > dev.txt
gen 3 60 > test.txt

SHAPE=(--tokenizer "$TOK" --n-layers 1 --n-heads 2 --dropout 0 --threads 1 --no-progress --lr 1e-2 --seed 3)
FILES=(--train "$TMP/train.txt" --dev "$TMP/dev.txt" --test "$TMP/test.txt")
NP=("${FILES[@]}" "${SHAPE[@]}" --max-len 16 --d-model 16 --batch-size 16)
DP=("${FILES[@]}" "${SHAPE[@]}" --max-len 16 --d-model 16 --batch-size 32 --dp --noise-multiplier 0.7 --max-grad-norm 1
    --seeded-noise --max-physical-batch 16)

field() { grep -v '"final"' "$1" | grep -o "\"$2\":[^,}]*" | cut -d: -f2 | tr '\n' ' '; }
final() { grep '"final":true' "$1"; }
final_num() { final "$1" | grep -o "\"$2\":[^,}]*" | cut -d: -f2; }

# ---- non-private: it learns ----
out=$("$BIN" train-lm "${NP[@]}" --epochs 4 --out "$TMP/np" 2>&1) || fail "non-private run failed: $out"
ppl=($(field "$TMP/np/metrics.jsonl" dev_perplexity))
echo "non-private dev perplexity by epoch: ${ppl[*]}"
[ ${#ppl[@]} -eq 4 ] || fail "expected 4 epoch lines: $(cat "$TMP/np/metrics.jsonl")"
awk -v a="${ppl[0]}" -v b="${ppl[3]}" 'BEGIN { exit !(b < a / 3) }' || fail "dev perplexity did not fall well: ${ppl[*]}"
# the unigram model of the training tokens (maximum likelihood; a token unseen in training counts once) on the dev set
"$BIN" tokenize --tokenizer "$TOK" < train.txt > train.ids || fail "tokenize train"
"$BIN" tokenize --tokenizer "$TOK" < dev.txt > dev.ids || fail "tokenize dev"
uni=$(awk 'NR == FNR { for (i = 1; i <= NF; i++) c[$i]++; c[50256]++; n += NF + 1; next }
           { for (i = 1; i <= NF; i++) { s += log((c[$i] ? c[$i] : 1) / n); m++ } s += log(c[50256] / n); m++ }
           END { printf "%.4f", exp(-s / m) }' train.ids dev.ids)
echo "unigram dev perplexity $uni, model ${ppl[3]}"
awk -v u="$uni" -v b="${ppl[3]}" 'BEGIN { exit !(b < u / 2) }' || fail "dev perplexity ${ppl[3]} not well below the unigram $uni"
printf '%s' "$out" | grep -q 'test perplexity [0-9.]*  (60 examples' || fail "no test perplexity line: $out"
printf '%s' "$out" | grep -q 'tokens/s' || fail "no tokens/s: $out"
printf '%s' "$out" | grep -q 'privacy: none' || fail "non-private run's privacy line: $out"
final "$TMP/np/metrics.jsonl" | grep -q '"test_perplexity":[0-9.]*,"test_loss"' || fail "final line: $(final "$TMP/np/metrics.jsonl")"
# eval-lm of the saved model: the run's test perplexity
tp=$(final_num "$TMP/np/metrics.jsonl" test_perplexity)
ev=$("$BIN" eval-lm --model "$TMP/np/model.safetensors" --data "$TMP/test.txt" --tokenizer "$TOK" --json 2>&1) ||
    fail "eval-lm: $ev"
evp=$(printf '%s' "$ev" | grep -o '"perplexity":[^,}]*' | cut -d: -f2)
awk -v a="$tp" -v b="$evp" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * a) }' ||
    fail "eval-lm perplexity $evp differs from the run's test perplexity $tp"
echo "test perplexity: run $tp, eval-lm $evp"
# the saved model is a gpt2-family model, exported to the Hugging Face layout as is
"$BIN" export --hf "$TMP/hf" --model "$TMP/np/model.safetensors" > /dev/null 2>&1 || fail "export --hf of the trained model"
grep -q '"model_type":[[:space:]]*"gpt2"' "$TMP/hf/config.json" 2>/dev/null || fail "exported config.json: $(cat "$TMP/hf/config.json")"

# ---- truncation is counted ----
out=$("$BIN" train-lm --train "$TMP/train.txt" "${SHAPE[@]}" --max-len 6 --d-model 16 --batch-size 16 --epochs 1 --no-checkpoints --out "$TMP/trunc" 2>&1) ||
    fail "truncating run: $out"
nt=$(final_num "$TMP/trunc/metrics.jsonl" truncated_train)
[ "$nt" = 480 ] || fail "truncated_train $nt, expected 480: $(final "$TMP/trunc/metrics.jsonl")"
printf '%s' "$out" | grep -q '480 longer than the context of 6 truncated' || fail "truncation not reported: $out"
printf '%s' "$out" | grep -q 'kept epoch 1 (the last; no dev set)' || fail "no-dev summary: $out"

# ---- DP-SGD: privacy.json, epsilon recomputed, the privacy unit ----
out=$("$BIN" train-lm "${DP[@]}" --epochs 2 --out "$TMP/dp" 2>&1) || fail "DP run failed: $out"
printf '%s' "$out" | grep -q 'privacy: (epsilon = [0-9.]*, delta = 1e-06)-DP .*one line of the' ||
    fail "DP privacy statement: $out"
[ -f "$TMP/dp/privacy.json" ] || fail "no privacy.json"
grep -q '"privacy_unit":[[:space:]]*"one line of the training file' "$TMP/dp/privacy.json" || fail "privacy.json unit: $(cat "$TMP/dp/privacy.json")"
eps=$(final_num "$TMP/dp/metrics.jsonl" epsilon)
hist=$("$BIN" privacy --history "$TMP/dp/privacy.json" 2>&1) || fail "privacy --history: $hist"
heps=$(printf '%s' "$hist" | sed -n 's/^epsilon: *\([0-9.]*\).*/\1/p')
awk -v a="$eps" -v b="$heps" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d < 1e-3) }' ||
    fail "privacy --history epsilon $heps, the run's $eps"
printf '%s' "$hist" | grep -q 'the same' || fail "privacy --history does not confirm the recorded epsilon: $hist"
echo "DP-SGD: epsilon $eps (privacy --history: $heps), dev perplexity $(field "$TMP/dp/metrics.jsonl" dev_perplexity)"

# ---- SIGKILL at a random step, then --resume: the same model ----
newest_step() { ls "$1" 2>/dev/null | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.safetensors$/\1/p' | sort -n | tail -1; }
kill_and_resume() {
    local name=$1 ref=$2 epochs=$3 tries=0 rc=0 target s pid total
    shift 3
    total=$(field "$TMP/$ref/metrics.jsonl" step | awk '{ print $NF }')
    while [ $tries -lt 3 ]; do
        tries=$((tries + 1))
        rm -rf "$TMP/$name"
        target=$((2 + RANDOM % (total / 2)))
        "$BIN" train-lm "$@" --epochs "$epochs" --checkpoint-every 1 --out "$TMP/$name" > "$TMP/$name.log" 2>&1 &
        pid=$!
        while kill -0 $pid 2>/dev/null; do
            s=$(newest_step "$TMP/$name/checkpoints")
            if [ -n "$s" ] && [ "$s" -ge "$target" ]; then
                kill -9 $pid 2>/dev/null
                break
            fi
            sleep 0.01
        done
        { wait $pid; } 2>/dev/null
        rc=$?
        [ $rc -eq 137 ] && break
        echo "$name: the run ended (status $rc) before the kill at step $target; again"
    done
    [ $rc -eq 137 ] || { fail "$name: could not kill the run (status $rc): $(cat "$TMP/$name.log")"; return; }
    [ -e "$TMP/$name/model.safetensors" ] && fail "$name: a killed run left a model file"
    echo "$name: SIGKILL once step $target was checkpointed (of $total)"
    out=$("$BIN" train-lm --resume "$TMP/$name" 2>&1) || { fail "$name: resume failed: $out"; return; }
    printf '%s' "$out" | grep -q 'resuming from .*ckpt-' || fail "$name: resume does not say where it resumes: $out"
    cmp -s "$TMP/$ref/model.safetensors" "$TMP/$name/model.safetensors" || fail "$name: model differs from the uninterrupted run"
    [ "$(field "$TMP/$ref/metrics.jsonl" dev_perplexity)" = "$(field "$TMP/$name/metrics.jsonl" dev_perplexity)" ] ||
        fail "$name: dev perplexities differ: $(field "$TMP/$name/metrics.jsonl" dev_perplexity) vs $(field "$TMP/$ref/metrics.jsonl" dev_perplexity)"
    if [ -e "$TMP/$ref/privacy.json" ]; then
        cmp -s "$TMP/$ref/privacy.json" "$TMP/$name/privacy.json" || fail "$name: privacy.json differs"
    fi
}
kill_and_resume kill_np np 4 "${NP[@]}"
kill_and_resume kill_dp dp 2 "${DP[@]}"

# ---- --init: start from the exported model ----
# 1 epoch at a learning rate of 1e-12: the model does not move, so the run's initial and final dev
# perplexities are eval-lm's of the folder
ev=$("$BIN" eval-lm --model "$TMP/hf" --data "$TMP/dev.txt" --tokenizer "$TOK" --json 2>&1) || fail "eval-lm of the export: $ev"
evp=$(printf '%s' "$ev" | grep -o '"perplexity":[^,}]*' | cut -d: -f2)
BASE=(--train "$TMP/train.txt" --dev "$TMP/dev.txt" --tokenizer "$TOK" --threads 1 --no-progress --seed 3)
INIT=("${BASE[@]}" --init "$TMP/hf")
out=$("$BIN" train-lm "${INIT[@]}" --lr 1e-12 --epochs 1 --out "$TMP/init0" 2>&1) || fail "--init run: $out"
printf '%s' "$out" | grep -q "starting from the model of --init $TMP/hf (tied head, context 16" || fail "--init not reported: $out"
ip=$(final_num "$TMP/init0/metrics.jsonl" init_dev_perplexity)
dp0=$(final_num "$TMP/init0/metrics.jsonl" dev_perplexity)
echo "--init: eval-lm dev perplexity of the folder $evp; the run's initial $ip, after 1 epoch at lr 1e-12 $dp0"
awk -v a="$ip" -v b="$evp" -v c="$dp0" 'BEGIN { d = a - b; if (d < 0) d = -d; e = c - b; if (e < 0) e = -e;
    exit !(b > 0 && d <= 1e-6 * b && e <= 1e-5 * b) }' || fail "--init: initial dev perplexity $ip / $dp0, eval-lm $evp"
# --untied with the tied folder: untying, the head starting as a copy of the embedding: the same initial
# model (eval-lm's dev perplexity), now with a head of its own, which ghost clipping (refused for a tied
# head) then fine-tunes under DP-SGD
out=$("$BIN" train-lm "${INIT[@]}" --untied --dp --clip-mode ghost --noise-multiplier 0.7 --seeded-noise --lr 1e-12 \
      --batch-size 32 --epochs 1 --out "$TMP/untie0" 2>&1) || fail "--init with --untied: $out"
printf '%s' "$out" | grep -q "untying the head of --init $TMP/hf: the output layer starts as a copy of the token embedding" ||
    fail "untying not reported: $out"
printf '%s' "$out" | grep -q "(untied head, context 16" || fail "--init --untied: not an untied run: $out"
up=$(final_num "$TMP/untie0/metrics.jsonl" init_dev_perplexity)
echo "--init --untied: initial dev perplexity $up (eval-lm of the tied folder $evp)"
awk -v a="$up" -v b="$evp" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= 1e-6 * b) }' ||
    fail "--init --untied: initial dev perplexity $up differs from the tied folder's $evp"
grep -q '"out.weight"' "$TMP/untie0/model.safetensors" || fail "--init --untied: the saved model has no head of its own"
# DP-SGD fine-tuning of the last block and the final LayerNorm (tied head: frozen with wte)
FT=("${INIT[@]}" --train-only "layers:0,ln_f" --lr 1e-2 --batch-size 32 --dp --noise-multiplier 0.7 --max-grad-norm 1
    --seeded-noise --max-physical-batch 16)
out=$("$BIN" train-lm "${FT[@]}" --epochs 2 --out "$TMP/ft" 2>&1) || fail "DP fine-tuning from --init: $out"
printf '%s' "$out" | grep -q 'training only layers:0,ln_f: [0-9]* of [0-9]* parameters.*tied to wte: both are frozen' ||
    fail "--train-only not reported: $out"
ftp=$(final_num "$TMP/ft/metrics.jsonl" dev_perplexity)
rdp=$(final_num "$TMP/dp/metrics.jsonl" dev_perplexity)
echo "DP-SGD 2 epochs: dev perplexity from --init (layers:0,ln_f trained) $ftp, from random init $rdp"
awk -v a="$ftp" -v b="$rdp" 'BEGIN { exit !(a > 0 && a < b / 2) }' || fail "DP fine-tuning $ftp is not well below DP from random $rdp"
grep -Fq 'train_only\":\"layers:0,ln_f\"' "$TMP/ft/model.safetensors" || fail "model metadata has no train_only"
if command -v python3 > /dev/null 2>&1; then
    # which tensors of two dpformer model files differ (byte-compare), with the standard library only
    differing() {
        python3 - "$1" "$2" << 'PY'
import json, struct, sys
def read(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items() if k != '__metadata__'}
a, b = read(sys.argv[1]), read(sys.argv[2])
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
print(' '.join(sorted(k for k in a if a[k] != b[k])))
PY
    }
    d=$(differing "$TMP/np/model.safetensors" "$TMP/ft/model.safetensors") || fail "compare tensors"
    want="layers.0.attn.proj.bias layers.0.attn.proj.weight layers.0.attn.qkv.bias layers.0.attn.qkv.weight layers.0.ffn.fc1.bias layers.0.ffn.fc1.weight layers.0.ffn.fc2.bias layers.0.ffn.fc2.weight layers.0.ln1.bias layers.0.ln1.weight layers.0.ln2.bias layers.0.ln2.weight ln_f.bias ln_f.weight"
    [ "$d" = "$want" ] || fail "tensors changed by fine-tuning: '$d', expected exactly the trained ones '$want'"
    echo "--train-only layers:0,ln_f: exactly the trained tensors changed"
else
    echo "no python3: the tensor-by-tensor comparison is skipped"
fi
# killed and resumed: the same model (the frozen parts and the starting point come from the checkpoint)
kill_and_resume kill_ft ft 2 "${FT[@]}"
expect 2 'the run trains layers:0,ln_f; cannot resume with --train-only wte,layers:0,ln_f,head' -- \
    "$BIN" train-lm --resume "$TMP/ft" --train-only "head,layers:0,ln_f"
expect 2 'the run trains every parameter; cannot resume with --train-only layers:0' -- "$BIN" train-lm --resume "$TMP/np" --train-only layers
expect 2 'cannot resume with --init' -- "$BIN" train-lm --resume "$TMP/ft" --init "$TMP/np/model.safetensors"
expect 2 'run started from --init random; cannot resume with --init' -- "$BIN" train-lm --resume "$TMP/np" --init "$TMP/hf"
# refused: folders that are not a model of the run's kind, shape flags that disagree, bad lists
mkdir -p "$TMP/noweights" && cp "$TMP/hf/config.json" "$TMP/noweights/"
expect 2 'noweights: no model.safetensors next to config.json' -- "$BIN" train-lm "${BASE[@]}" --init "$TMP/noweights" --out "$TMP/bad"
cp -r "$TMP/hf" "$TMP/misshapen" && sed -i 's/"n_embd":[[:space:]]*16/"n_embd": 8/' "$TMP/misshapen/config.json"
expect 2 'misshapen/model.safetensors: tensor transformer.wte.weight has shape \[50257, 16\], expected \[50257, 8\]' -- \
    "$BIN" train-lm "${BASE[@]}" --init "$TMP/misshapen" --out "$TMP/bad"
expect 2 'nosuch: cannot open' -- "$BIN" train-lm "${BASE[@]}" --init "$TMP/nosuch" --out "$TMP/bad"
expect 2 '\-\-d-model 32 disagrees with the model of --init' -- "$BIN" train-lm "${INIT[@]}" --d-model 32 --out "$TMP/bad"
expect 2 'a context of 32 cannot be trained from it' -- "$BIN" train-lm "${INIT[@]}" --max-len 32 --out "$TMP/bad"
expect 2 'layers:1": the model has 1 block' -- "$BIN" train-lm "${INIT[@]}" --train-only layers:1 --out "$TMP/bad"
expect 2 'unknown part "lm_head"' -- "$BIN" train-lm "${INIT[@]}" --train-only wte,lm_head --out "$TMP/bad"
expect 2 'the range is backwards' -- "$BIN" train-lm "${NP[@]}" --train-only layers:1-0 --out "$TMP/bad"

# ---- refused: bad flags and checkpoints that do not fit ----
expect 2 '\-\-train and --tokenizer are required' -- "$BIN" train-lm --train "$TMP/train.txt" --out "$TMP/bad"
expect 2 'privacy flags need --dp' -- "$BIN" train-lm "${NP[@]}" --noise-multiplier 1 --out "$TMP/bad"
expect 2 'needs --target-epsilon or --noise-multiplier' -- "$BIN" train-lm "${NP[@]}" --dp --out "$TMP/bad"
expect 2 'not divisible' -- "$BIN" train-lm "${FILES[@]}" "${SHAPE[@]}" --d-model 15 --out "$TMP/bad"
expect 2 'unknown' -- "$BIN" train-lm "${NP[@]}" --no-such-flag --out "$TMP/bad"
expect 2 'has no text' -- "$BIN" train-lm --train /dev/null "${SHAPE[@]}" --out "$TMP/bad"
expect 2 'select-best is for --dp' -- "$BIN" train-lm "${NP[@]}" --select-best --out "$TMP/bad"
head -n 200 train.txt > less.txt
expect 2 'written for another dataset: train set' -- "$BIN" train-lm --resume "$TMP/np" --epochs 5 --train "$TMP/less.txt"
expect 2 'cannot resume with d-model 32' -- "$BIN" train-lm --resume "$TMP/np" --d-model 32
expect 2 'cannot resume with mode DP-SGD' -- "$BIN" train-lm --resume "$TMP/np" --dp --noise-multiplier 1
printf 'label\tsentence\n1\tgood film\n0\tbad film\n1\tgreat\n0\tawful\n' > cls.tsv
"$BIN" train-text --train "$TMP/cls.tsv" --epochs 1 --max-len 8 --d-model 8 --no-progress --out "$TMP/cls" > /dev/null 2>&1 ||
    fail "train a text classifier"
expect 2 'a checkpoint of a text-classification run.*dpformer train-text --resume' -- "$BIN" train-lm --resume "$TMP/cls"
expect 2 'a checkpoint of a language-model run.*dpformer train-lm --resume' -- "$BIN" train-text --resume "$TMP/np"
# more epochs on resume continue the finished run
expect 0 'resuming from .*after epoch 4 of 5' -- "$BIN" train-lm --resume "$TMP/np" --epochs 5
[ "$(field "$TMP/np/metrics.jsonl" epoch)" = "1 2 3 4 5 " ] || fail "resumed to 5 epochs: $(cat "$TMP/np/metrics.jsonl")"
cli_finish

#!/usr/bin/env bash
# dpformer audit --task lm: the controls of docs/audit.md on a tiny random GPT-2-family model with the GPT-2
# tokenizer (../shared/tokenizers/gpt2, or $DPFORMER_TOKENIZERS/gpt2; skipped without it) and a few hundred
# generated lines. Without noise (and a clip norm too large to matter) the canaries (random token
# sequences) are found and the lower bound is well above 1; DP-SGD at epsilon 1 gives a bound below 1
# and the verdict "consistent" (exit 0); the JSON report carries the documented keys; bad flags exit 2.
# Runs are seeded (--seeded-noise).
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_audit_lm "$@"
SRC=${DPFORMER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TOK=${DPFORMER_TOKENIZERS:-$SRC/../shared/tokenizers}/gpt2
if [ ! -f "$TOK/encoder.json" ] || [ ! -f "$TOK/vocab.bpe" ]; then
    echo "cli_audit_lm: skipped: no GPT-2 tokenizer at $TOK (set DPFORMER_TOKENIZERS)"
    exit 77
fi
have_python=0
python3 -c 'import json' 2>/dev/null && have_python=1
awk -v seed=1 -v n=240 'BEGIN { srand(seed);
    split("the cat|the dog|a bird|my friend|the old man|a child", S, "|");
    split("sat on|looked at|ran to|walked past|slept near", V, "|");
    split("the mat|the door|a tree|the house|the river|a red car", O, "|");
    for (i = 0; i < n; i++) print S[1 + int(rand() * 6)] " " V[1 + int(rand() * 5)] " " O[1 + int(rand() * 6)] "." }' \
    > "$TMP/train.txt"
small=(--task lm --train "$TMP/train.txt" --tokenizer "$TOK" --max-len 12 --d-model 16 --n-heads 2 --n-layers 1
       --dropout 0 --batch-size 32 --epochs 4 --lr 1e-2 --canaries 200 --canary-len 8 --seeded-noise --threads 1
       --no-progress)
keys='
import json, sys
d = json.load(sys.stdin)
for k in ("task", "mode", "epsilon", "epsilon_lower_bound", "confidence", "canaries", "guesses", "correct", "auc",
          "included", "hypotheses", "tpr_at_fpr", "delta", "verdict"):
    assert k in d, k
assert d["task"] == "lm" and d["canaries"] == 200 and abs(d["confidence"] - 0.95) < 1e-12, d
assert 0 <= d["correct"] <= d["guesses"] <= 200, d
'

# ---- power: no noise, no effective clipping ----
out=$("$BIN" audit "${small[@]}" --dp --noise-multiplier 0 --max-grad-norm 1000 --json --out "$TMP/nonoise" 2>"$TMP/nonoise.err")
rc=$?
[ "$rc" -eq 0 ] || fail "no-noise audit exited $rc: $(cat "$TMP/nonoise.err")"
if [ "$have_python" -eq 1 ]; then
    printf '%s' "$out" | python3 -c "$keys"'
assert d["epsilon"] is None, d
assert d["epsilon_lower_bound"] > 1.5, d          # the audit has power
assert d["auc"] > 0.9, d
' || fail "no-noise audit: bad JSON or no power: $out"
fi

# ---- DP-SGD at epsilon 1: a bound below 1, verdict consistent ----
out=$("$BIN" audit "${small[@]}" --dp --target-epsilon 1 --out "$TMP/eps1" 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "DP-SGD epsilon-1 audit exited $rc: $out"
printf '%s' "$out" | grep -q "^verdict: consistent" || fail "epsilon-1 verdict: $out"
if [ "$have_python" -eq 1 ]; then
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["mode"] == "dp-sgd" and abs(d["epsilon"] - 1.0) < 1e-6 and d["epsilon_lower_bound"] < 1.0, d
assert len(d["canary_scores"]) == 200
' "$TMP/eps1/audit.json" || fail "epsilon-1 audit.json: $(cat "$TMP/eps1/audit.json")"
fi

# ---- bad input: exit 2, the flag named ----
expect 2 "needs --train FILE and --tokenizer DIR" -- "$BIN" audit --task lm --train "$TMP/train.txt"
expect 2 "\-\-canary-len 11: a canary must fit the context of --max-len 12" -- "$BIN" audit --task lm --train "$TMP/train.txt" --tokenizer "$TOK" --max-len 12 --canary-len 11
expect 2 "\-\-max-grad-norm is a privacy flag" -- "$BIN" audit --task lm --train "$TMP/train.txt" --tokenizer "$TOK" --max-grad-norm 1
expect 2 "\-\-dp needs --target-epsilon or --noise-multiplier" -- "$BIN" audit "${small[@]}" --dp
expect 2 "unknown flag '--dpfp'" -- "$BIN" audit "${small[@]}" --dpfp
expect 2 "\-\-tokenizer" -- "$BIN" audit --task lm --train "$TMP/train.txt" --tokenizer "$TMP/none"
expect 0 "\-\-canary-len N" -- "$BIN" audit --task lm --help

cli_finish

#!/usr/bin/env bash
# dpformer audit --task text: the controls of docs/audit.md on a small synthetic text-classification task
# (sentences of a little grammar, labelled by their sentiment word). Without noise (and a clip norm too
# large to matter) the canaries (random words, random labels) are found and the lower bound is well
# above 1; DP-SGD at epsilon 1 gives a bound below 1 and the verdict "consistent" (exit 0); DP-FP is
# audited on its weights and reported as not covered by its epsilon (exit 0 whatever the bound); the
# JSON report carries the documented keys; bad flags exit 2. Runs are seeded (--seeded-noise).
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_audit_text "$@"

have_python=0
python3 -c 'import json' 2>/dev/null && have_python=1
awk -v seed=1 -v n=1000 'BEGIN { srand(seed); print "sentence\tlabel";
    split("the film|this movie|the plot|the acting|the ending|its story", S, "|");
    split("was|is|seemed|felt", V, "|");
    split("dull|boring|awful|weak|tedious|bad", N, "|"); split("great|lovely|moving|superb|fun|good", P, "|");
    for (i = 0; i < n; i++) { y = int(rand() * 2); w = y ? P[1 + int(rand() * 6)] : N[1 + int(rand() * 6)];
        print S[1 + int(rand() * 6)] " " V[1 + int(rand() * 4)] " " w " ." "\t" y } }' > "$TMP/train.tsv"
small=(--task text --train "$TMP/train.tsv" --tokenizer words --pool mean --max-len 16 --d-model 16 --n-heads 2
       --n-layers 1 --batch-size 64 --epochs 10 --lr 1e-2 --canaries 500 --seeded-noise --threads 1 --no-progress)
keys='
import json, sys
d = json.load(sys.stdin)
for k in ("task", "mode", "epsilon", "epsilon_lower_bound", "confidence", "canaries", "guesses", "correct", "auc",
          "included", "hypotheses", "tpr_at_fpr", "delta", "verdict", "epsilon_covers", "audited"):
    assert k in d, k
assert d["task"] == "text" and d["canaries"] == 500 and abs(d["confidence"] - 0.95) < 1e-12, d
assert 0 <= d["correct"] <= d["guesses"] <= 500, d
'

# ---- power: no noise, no effective clipping ----
out=$("$BIN" audit "${small[@]}" --dp --noise-multiplier 0 --max-grad-norm 1000 --json --out "$TMP/nonoise" 2>"$TMP/nonoise.err")
rc=$?
[ "$rc" -eq 0 ] || fail "no-noise audit exited $rc: $(cat "$TMP/nonoise.err")"
grep -q "no privacy guarantee" "$TMP/nonoise.err" || fail "no-noise audit does not say the run has no guarantee"
if [ "$have_python" -eq 1 ]; then
    printf '%s' "$out" | python3 -c "$keys"'
assert d["epsilon"] is None, d
assert d["epsilon_lower_bound"] > 1.5, d          # the audit has power
assert d["auc"] > 0.9, d
' || fail "no-noise audit: bad JSON or no power: $out"
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert len(d["canary_scores"]) == 500 and sum(d["canary_included"]) == d["included"]
' "$TMP/nonoise/audit.json" || fail "audit.json lacks the per-canary scores and bits"
fi

# ---- DP-SGD at epsilon 1: a bound below 1, verdict consistent ----
out=$("$BIN" audit "${small[@]}" --dp --target-epsilon 1 --json --out "$TMP/eps1" 2>"$TMP/eps1.err")
rc=$?
[ "$rc" -eq 0 ] || fail "DP-SGD epsilon-1 audit exited $rc: $(cat "$TMP/eps1.err")"
if [ "$have_python" -eq 1 ]; then
    printf '%s' "$out" | python3 -c "$keys"'
assert d["mode"] == "dp-sgd" and abs(d["epsilon"] - 1.0) < 1e-6, d
assert d["epsilon_lower_bound"] < 1.0, d
assert d["verdict"].startswith("consistent"), d
assert d["epsilon_covers"] == "the trained weights", d
' || fail "DP-SGD epsilon-1 audit: $out"
fi

# ---- DP-FP at epsilon 1: the weights are audited, which its epsilon does not cover: exit 0, said so ----
out=$("$BIN" audit "${small[@]}" --dpfp --target-epsilon 1 --out "$TMP/dpfp" 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "DP-FP audit exited $rc: $out"
printf '%s' "$out" | grep -q "for the noised representations ONLY, not the weights" || fail "DP-FP: no coverage line: $out"
printf '%s' "$out" | grep -q "^verdict: not covered" || fail "DP-FP: verdict: $out"
if [ "$have_python" -eq 1 ]; then
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["mode"] == "dp-fp" and abs(d["epsilon"] - 1.0) < 1e-6, d
assert d["epsilon_covers"] == "the noised representations only", d
assert d["mechanism_events"] == d["dp_steps"] > 0 and d["dpfp_clip"] == 1, d
' "$TMP/dpfp/audit.json" || fail "DP-FP audit.json: $(cat "$TMP/dpfp/audit.json")"
fi

# ---- bad input: exit 2, the flag named ----
expect 2 "needs --train FILE" -- "$BIN" audit --task text --canaries 10
expect 2 "choose one of --dp (DP-SGD) and --dpfp" -- "$BIN" audit "${small[@]}" --dp --dpfp --target-epsilon 1
expect 2 "\-\-micro-batches is a DP-FP flag" -- "$BIN" audit "${small[@]}" --dp --target-epsilon 1 --micro-batches 2
expect 2 "\-\-max-grad-norm is a DP-SGD flag" -- "$BIN" audit "${small[@]}" --dpfp --target-epsilon 1 --max-grad-norm 1
expect 2 "\-\-noise-multiplier is a privacy flag" -- "$BIN" audit --task text --train "$TMP/train.tsv" --noise-multiplier 1
expect 2 "\-\-canary-len 16: a canary must fit the window of --max-len 16" -- "$BIN" audit "${small[@]}" --dp --target-epsilon 1 --canary-len 16
expect 2 "guesses 600 is more than the 500 canaries" -- "$BIN" audit "${small[@]}" --guesses 600
expect 2 "unknown flag '--dev'" -- "$BIN" audit "${small[@]}" --dev "$TMP/train.tsv"
expect 2 "unknown task 'images'" -- "$BIN" audit --task images
expect 2 "\-\-dpfp needs --target-epsilon or --noise-multiplier" -- "$BIN" audit "${small[@]}" --dpfp
expect 0 "\-\-dpfp-clip" -- "$BIN" audit --task text --help
expect 0 "\-\-task text --help" -- "$BIN" audit --help

cli_finish

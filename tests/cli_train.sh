#!/usr/bin/env bash
# `dpformer demo`, `dpformer train` and `dpformer eval` from the command line, with tiny settings:
# help and usage exit codes, the printed results, metrics.jsonl (valid JSON, expected keys), the saved
# model read back by eval, exit status 2 with a message naming the problem for bad flags and bad
# files, and byte-identical models from two runs with the same seed.
# Usage: bash tests/cli_train.sh /path/to/dpformer
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_train "$@"
cd "$TMP" || exit 1
have_python=0
command -v python3 >/dev/null && have_python=1

# ---- help and usage ----
expect_e 0 'usage: dpformer COMMAND' -- "$BIN" --help
expect_e 0 '--max-len' -- "$BIN" train --help
expect_e 0 '--data' -- "$BIN" train --help
expect_e 0 '--model' -- "$BIN" eval --help
expect_e 0 '--users' -- "$BIN" demo --help
expect_e 0 'bench step' -- "$BIN" bench --help
expect_e 2 'usage: dpformer COMMAND' -- "$BIN"
expect_e 2 "unknown command 'frobnicate'" -- "$BIN" frobnicate

# ---- demo ----
out=$("$BIN" demo --users 300 --items 100 --epochs 1 --dp-epochs 1 --dp-batch-size 64 --max-len 10 --out "$TMP/demo" --no-progress 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "demo exited $rc: $out"
printf '%s' "$out" | grep -Eq 'Transformer, non-private +none +[01]\.[0-9]{4}' || fail "demo prints no non-private NDCG@10: $out"
printf '%s' "$out" | grep -Eq 'Transformer, DP-SGD +eps [0-9.]+, delta 1e-06 +[01]\.[0-9]{4}' || fail "demo prints no private NDCG@10 with epsilon: $out"
printf '%s' "$out" | grep -Eq 'popularity baseline +- +[01]\.[0-9]{4}' || fail "demo prints no popularity NDCG@10: $out"
printf '%s' "$out" | grep -q 'privacy unit: one user' || fail "demo does not state the privacy unit: $out"
for sub in nonprivate private; do
    [ -s "$TMP/demo/$sub/model.safetensors" ] || fail "demo wrote no $sub/model.safetensors"
    [ -s "$TMP/demo/$sub/metrics.jsonl" ] || fail "demo wrote no $sub/metrics.jsonl"
done
[ -s "$TMP/demo/private/privacy.json" ] || fail "demo wrote no private/privacy.json"

# check_metrics FILE EPOCHS: every line valid JSON; EPOCHS epoch lines with their keys, then one final line
check_metrics() {
    [ "$have_python" -eq 1 ] || return 0
    python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin]' < "$1" || { fail "$1: a line is not valid JSON"; return; }
    python3 - "$1" "$2" <<'EOF' || fail "$1: unexpected metrics lines: $(cat "$1")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
epochs = int(sys.argv[2])
assert len(lines) == epochs + 1, len(lines)
for i, d in enumerate(lines[:-1]):
    for k in ("epoch", "step", "train_loss", "lr", "valid_ndcg10", "valid_hr10", "epoch_seconds"):
        assert k in d, (i, k)
    assert d["epoch"] == i + 1 and d["train_loss"] > 0 and 0 <= d["valid_ndcg10"] <= 1, d
last = lines[-1]
assert last.get("final") is True, last
for k in ("best_epoch", "valid_ndcg10", "test_ndcg10", "test_hr10", "test_ndcg20", "test_hr20"):
    assert k in last, k
assert 1 <= last["best_epoch"] <= epochs and 0 <= last["test_ndcg10"] <= 1, last
EOF
}
check_metrics "$TMP/demo/nonprivate/metrics.jsonl" 1
check_metrics "$TMP/demo/private/metrics.jsonl" 1
if [ "$have_python" -eq 1 ]; then
    python3 - "$TMP/demo/private/metrics.jsonl" <<'EOF' || fail "private metrics lack epsilon: $(cat "$TMP/demo/private/metrics.jsonl")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert 0 < lines[0]["epsilon"] <= 8.0 and lines[0]["delta"] == 1e-06, lines[0]
assert 0 < lines[-1]["epsilon"] <= 8.0 and lines[-1]["dp_steps"] >= 1, lines[-1]
EOF
fi

# ---- train / eval on a small interactions file: 60 users, 5..12 items each, item ids 1..30 ----
awk 'BEGIN { s = 7
    for (u = 1; u <= 60; u++) { n = 5 + (u * 7) % 8
        for (k = 0; k < n; k++) { s = (s * 1103515245 + 12345) % 2147483648; print u, 1 + (u + k * k + int(s / 65536)) % 30 } } }' \
    > "$TMP/inter.txt"
[ "$(wc -l < "$TMP/inter.txt")" -gt 300 ] || fail "test data not written"
SMALL=(--epochs 2 --max-len 8 --d-model 16 --batch-size 16 --no-progress)
out=$("$BIN" train --data "$TMP/inter.txt" "${SMALL[@]}" --out "$TMP/run" 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "train exited $rc: $out"
printf '%s' "$out" | grep -q '60 users, 30 items' || fail "train does not report the dataset size: $out"
printf '%s' "$out" | grep -Eq 'test +NDCG@10 [01]\.[0-9]{4}' || fail "train prints no test NDCG@10: $out"
printf '%s' "$out" | grep -Eq 'test, popularity +NDCG@10' || fail "train prints no popularity NDCG@10: $out"
[ -s "$TMP/run/model.safetensors" ] || fail "train wrote no model.safetensors"
check_metrics "$TMP/run/metrics.jsonl" 2
if [ "$have_python" -eq 1 ] && [ -f "$(dirname "$0")/safetensors_check.py" ]; then
    python3 "$(dirname "$0")/safetensors_check.py" "$TMP/run/model.safetensors" >/dev/null \
        || fail "the saved model is not a well-formed safetensors file"
fi

expect_e 0 'model +NDCG@10 [01]\.[0-9]{4}' -- "$BIN" eval --model "$TMP/run/model.safetensors" --data "$TMP/inter.txt"
expect_e 0 'popularity +NDCG@10' -- "$BIN" eval --model "$TMP/run/model.safetensors" --data "$TMP/inter.txt" --split valid
# eval of the saved model reproduces the test NDCG@10 recorded at the end of training
out=$("$BIN" eval --model "$TMP/run/model.safetensors" --data "$TMP/inter.txt" --json 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "eval --json exited $rc: $out"
if [ "$have_python" -eq 1 ]; then
    printf '%s' "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
final = [json.loads(l) for l in open(sys.argv[1])][-1]
assert d["users"] == 60 and d["split"] == "test", d
assert abs(d["ndcg10"] - final["test_ndcg10"]) < 1e-6, (d, final)
assert 0 <= d["popularity_ndcg10"] <= 1, d' "$TMP/run/metrics.jsonl" || fail "eval --json: unexpected output: $out"
fi
printf '1 1\n1 2\n1 3\n2 3\n2 4\n2 5\n' > "$TMP/other.txt"
expect_e 2 'has 30 items but .*other.txt has 5' -- "$BIN" eval --model "$TMP/run/model.safetensors" --data "$TMP/other.txt"
# ---- DP-SGD training: the statement names epsilon, delta and the unit; privacy.json recomputes epsilon ----
out=$("$BIN" train --data "$TMP/inter.txt" --epochs 2 --max-len 8 --d-model 16 --batch-size 16 --no-progress \
      --dp --target-epsilon 4 --delta 1e-5 --max-grad-norm 0.5 --out "$TMP/dp" 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "DP train exited $rc: $out"
printf '%s' "$out" | grep -Eq 'privacy: \(epsilon = [0-9.]+, delta = 1e-05\)-DP for each user' || fail "DP train: no privacy statement: $out"
printf '%s' "$out" | grep -q 'RDP accountant' || fail "DP train: accountant not named: $out"
[ -s "$TMP/dp/privacy.json" ] || fail "DP train wrote no privacy.json"
eps_run=$(printf '%s' "$out" | sed -n 's/.*(epsilon = \([0-9.]*\), delta.*/\1/p')
eps_acc=$("$BIN" privacy --history "$TMP/dp/privacy.json" --delta 1e-5 --json 2>/dev/null | sed -n 's/.*"epsilon":[[:space:]]*\([0-9.e+-]*\).*/\1/p' | head -1)
awk -v a="$eps_run" -v b="$eps_acc" 'BEGIN { exit !(a > 0 && a <= 4 && (a - b < 0.001 && b - a < 0.001)) }' \
    || fail "epsilon printed by train ($eps_run) differs from the accountant on privacy.json ($eps_acc)"
out=$("$BIN" train --data "$TMP/inter.txt" --epochs 1 --max-len 8 --d-model 16 --batch-size 16 --no-progress \
      --dp --noise-multiplier 0 --out "$TMP/dp0" 2>&1)
printf '%s' "$out" | grep -q 'NO differential privacy guarantee' || fail "sigma 0 not flagged: $out"
printf '%s' "$out" | grep -q 'privacy: NONE' || fail "sigma 0 summary claims privacy: $out"

# no user with a training target (3 items each: one training item), and inconsistent DP flags
printf '1 5 6 7\n2 8 9 10\n' > "$TMP/three.txt"
expect_e 2 'no user has at least 2 training items' -- "$BIN" train --data "$TMP/three.txt" --format sequences --out "$TMP/three"
expect_e 2 'need --dp' -- "$BIN" train --data "$TMP/other.txt" --noise-multiplier 1 --out "$TMP/x"
expect_e 2 'needs --target-epsilon or --noise-multiplier' -- "$BIN" train --data "$TMP/other.txt" --dp --out "$TMP/x"
expect_e 2 'no privacy' -- "$BIN" train --data "$TMP/other.txt" --dp --noise-multiplier 0 --target-epsilon 3 --out "$TMP/x"
expect_e 2 "unknown mode 'fast'" -- "$BIN" train --data "$TMP/other.txt" --dp --target-epsilon 3 --clip-mode fast --out "$TMP/x"
expect_e 2 "unknown accountant 'gdp'" -- "$BIN" train --data "$TMP/other.txt" --dp --target-epsilon 3 --accountant gdp --out "$TMP/x"

# ---- bad input: exit status 2 and a message naming the problem ----
T=("$BIN" train --max-len 8 --d-model 16 --batch-size 16 --no-progress --out "$TMP/bad")
# expect2 PATTERN -- command...: status exactly 2 (so not a crash, which is >= 128)
expect2() { expect 2 "$@"; }
expect2 "unknown flag '--bogus'" -- "${T[@]}" --data "$TMP/inter.txt" --epochs 1 --bogus 1
expect2 'd-model 10 is not divisible by --n-heads 3' -- "$BIN" train --data "$TMP/inter.txt" --d-model 10 --n-heads 3 --epochs 1 --no-progress --out "$TMP/bad"
expect2 '--dropout.*1\.5' -- "${T[@]}" --data "$TMP/inter.txt" --epochs 1 --dropout 1.5
expect2 '--epochs.*0' -- "${T[@]}" --data "$TMP/inter.txt" --epochs 0
expect2 "--lr.*'abc'" -- "${T[@]}" --data "$TMP/inter.txt" --epochs 1 --lr abc
expect2 '--data is required' -- "${T[@]}" --epochs 1
expect2 'nonexistent\.txt' -- "${T[@]}" --epochs 1 --data "$TMP/nonexistent.txt"
printf '1 2\n1 3\n1 x7\n2 4\n' > "$TMP/malformed.txt"
expect2 'malformed\.txt:3:' -- "${T[@]}" --epochs 1 --data "$TMP/malformed.txt"
: > "$TMP/empty.txt"
expect2 'empty\.txt.*empty' -- "${T[@]}" --epochs 1 --data "$TMP/empty.txt"
expect2 "--optimizer.*'adam2'" -- "${T[@]}" --data "$TMP/inter.txt" --epochs 1 --optimizer adam2
expect2 "--schedule.*'foo'" -- "${T[@]}" --data "$TMP/inter.txt" --epochs 1 --schedule foo
expect2 '--model and --data are required' -- "$BIN" eval --data "$TMP/inter.txt"
expect2 "--split.*'train'" -- "$BIN" eval --model "$TMP/run/model.safetensors" --data "$TMP/inter.txt" --split train
expect2 "unknown flag '--epochs'" -- "$BIN" eval --model "$TMP/run/model.safetensors" --data "$TMP/inter.txt" --epochs 1
head -c 1000 "$TMP/run/model.safetensors" > "$TMP/trunc_header.safetensors"
expect2 'trunc_header\.safetensors' -- "$BIN" eval --model "$TMP/trunc_header.safetensors" --data "$TMP/inter.txt"
size=$(wc -c < "$TMP/run/model.safetensors")
head -c $((size - 100)) "$TMP/run/model.safetensors" > "$TMP/trunc_data.safetensors"
expect2 'trunc_data\.safetensors' -- "$BIN" eval --model "$TMP/trunc_data.safetensors" --data "$TMP/inter.txt"
expect2 'not_a_model\.safetensors' -- "$BIN" eval --model "$TMP/not_a_model.safetensors" --data "$TMP/inter.txt"

# CRLF line ends are accepted and give the same dataset
sed 's/$/\r/' "$TMP/inter.txt" > "$TMP/crlf.txt"
expect_e 0 '60 users, 30 items' -- "${T[@]}" --epochs 1 --data "$TMP/crlf.txt"

# ---- determinism: same flags and seed -> byte-identical model ----
D=("$BIN" train --data "$TMP/inter.txt" "${SMALL[@]}" --seed 5)
"${D[@]}" --out "$TMP/seed_a" >/dev/null 2>&1 || fail "train --seed 5 (first run) failed"
"${D[@]}" --out "$TMP/seed_b" >/dev/null 2>&1 || fail "train --seed 5 (second run) failed"
cmp -s "$TMP/seed_a/model.safetensors" "$TMP/seed_b/model.safetensors" \
    || fail "two runs with --seed 5 gave different model.safetensors"
# and the seed matters (guards against a comparison that passes trivially)
cmp -s "$TMP/seed_a/model.safetensors" "$TMP/run/model.safetensors" \
    && fail "--seed 5 and the default seed gave identical models"

cli_finish

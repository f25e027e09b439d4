#!/usr/bin/env bash
# `dpformer train --dp --reattention`: the private release of the item frequencies is an event in the
# run's history (and `dpformer privacy --history` recomputes the reported epsilon from it), a public
# frequency file costs nothing and is named, and bad settings or files are refused clearly. The model
# file keeps the setting, so `dpformer eval` applies the correction (of a checkpoint too, with the
# frequencies, sigma and batch it holds); a seeded run resumed from a
# checkpoint in the middle of an epoch ends bit-identical to the uninterrupted run, with the
# frequencies taken from the checkpoint (one release event in the history, not two); a Re-Attention
# setting that differs on resume is refused, naming it.
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_reattention "$@"

awk 'BEGIN { srand(5); for (u = 1; u <= 600; u++) { n = 5 + int(rand()*10); printf "%d", u; x = 1 + int(rand()*80);
     for (k = 0; k < n; k++) { x = (x * 7 + 3) % 90 + 1; if (rand() < 0.3) x = 1 + int(rand()^3 * 90); printf " %d", x }
     printf "\n" } }' > "$TMP/seq.txt"
small="--data $TMP/seq.txt --format sequences --epochs 1 --max-len 10 --d-model 16 --batch-size 64 --no-progress --no-checkpoints"

expect 0 "released with the Gaussian mechanism" -- "$BIN" train $small --dp --target-epsilon 4 --reattention --out "$TMP/priv"
grep -q '"type":[[:space:]]*"gaussian"' "$TMP/priv/privacy.json" || fail "the frequency release is not in the history"
eps_run=$(sed -n 's/.*"final":true.*"epsilon":\([0-9.]*\).*/\1/p' "$TMP/priv/metrics.jsonl")
eps_hist=$("$BIN" privacy --history "$TMP/priv/privacy.json" --delta 1e-6 | sed -n 's/^epsilon: *\([0-9.]*\).*/\1/p')
awk -v a="$eps_run" -v b="$eps_hist" 'BEGIN { exit !(a > 0 && (a - b < 1e-4 && b - a < 1e-4) && a <= 4.000001) }' ||
    fail "reported epsilon $eps_run vs history $eps_hist (target 4)"

printf '# public frequencies\n1 0.5\n2 0.25\n' > "$TMP/freq.txt"
expect 0 "public file" -- "$BIN" train $small --dp --noise-multiplier 1 --reattention --item-freq "public:$TMP/freq.txt" --out "$TMP/pub"
grep -q '"type":[[:space:]]*"gaussian"' "$TMP/pub/privacy.json" && fail "a public file must not add a release event"

printf '1 0.5\n2 1.7\n' > "$TMP/bad.txt"
expect 2 "bad.txt:2: fraction" -- "$BIN" train $small --dp --noise-multiplier 1 --reattention --item-freq "public:$TMP/bad.txt" --out "$TMP/bad"
expect 2 "needs --dp" -- "$BIN" train $small --reattention --out "$TMP/x"
expect 2 "expected private or public:FILE" -- "$BIN" train $small --dp --noise-multiplier 1 --reattention --item-freq pub --out "$TMP/x"
# ---- the model file keeps the setting; eval applies it ----
have_python=0
python3 -c 'import json' 2>/dev/null && have_python=1
ra="--data $TMP/seq.txt --format sequences --max-len 10 --d-model 16 --batch-size 32 --no-progress --threads 1 --seed 3
    --dp --noise-multiplier 3 --seeded-noise --reattention --reattention-scale 30"
"$BIN" train $ra --epochs 2 --checkpoint-every 2 --keep-checkpoints 1000 --out "$TMP/ref" > "$TMP/ref.log" 2>&1 \
    || fail "Re-Attention reference run failed: $(cat "$TMP/ref.log")"
expect 0 'Re-Attention on (kappa 30, sigma 3.0000, expected batch 32.0, 600 training examples), from the model file' \
    -- "$BIN" eval --model "$TMP/ref/model.safetensors" --data "$TMP/seq.txt" --format sequences
out=$("$BIN" eval --model "$TMP/ref/model.safetensors" --data "$TMP/seq.txt" --format sequences --json 2>&1) \
    || fail "eval --json failed: $out"
if [ "$have_python" -eq 1 ]; then
    # the run's own final test metrics were computed with the correction: eval reproduces them
    printf '%s' "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
final = [json.loads(l) for l in open(sys.argv[1])][-1]
assert d["reattention"] is True, d
for k in ("ndcg10", "hr10", "ndcg20", "hr20"):
    assert abs(d[k] - final["test_" + k]) < 1e-6, (k, d, final)' "$TMP/ref/metrics.jsonl" \
        || fail "eval of the Re-Attention model does not reproduce the run's test metrics: $out"
    python3 "$(dirname "$0")/safetensors_check.py" "$TMP/ref/model.safetensors" > "$TMP/ref.tensors" \
        || fail "the Re-Attention model is not a well-formed safetensors file"
    grep -q '^reattention.item_freq F64 \[91\]' "$TMP/ref.tensors" || fail "no reattention.item_freq F64 [91]: $(cat "$TMP/ref.tensors")"
    grep -q '^meta dpformer.reattention = {"kappa":30,"sigma":3,"batch_size":32,"n_examples":600}' "$TMP/ref.tensors" \
        || fail "metadata dpformer.reattention: $(grep reattention "$TMP/ref.tensors")"
fi
# the run's final checkpoint, evaluated, is its model (the last epoch's parameters), with the correction
ck="$TMP/ref/checkpoints/$(ls "$TMP/ref/checkpoints" | tail -1)"
expect 0 'Re-Attention on (kappa 30, sigma 3.0000, expected batch 32.0, 600 training examples)' \
    -- "$BIN" eval --model "$ck" --data "$TMP/seq.txt" --format sequences
a=$("$BIN" eval --model "$ck" --data "$TMP/seq.txt" --format sequences --json 2>&1 | sed 's/,"parameters":.*//')
[ "$a" = "$(printf '%s' "$out" | sed 's/,"parameters":.*//')" ] || fail "eval of the final checkpoint: $a; of the model: $out"

# ---- resume: from the middle of epoch 2 (as after a kill there), and from the end of epoch 1 ----
steps=$(ls "$TMP/ref/checkpoints" | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.safetensors$/\1/p' | sort -n)
last=$(printf '%s\n' $steps | tail -1)
mid=$(printf '%s\n' $steps | awk -v t="$last" '$1 > t / 2 + 1 && $1 < t - 1 { print; exit }')
[ -n "$mid" ] || fail "no checkpoint inside epoch 2 among: $steps"
mkdir -p "$TMP/cut"
cp "$TMP/ref/checkpoints/$(printf 'ckpt-%012d.safetensors' "$mid")" "$TMP/cut/"
"$BIN" train --resume "$TMP/cut" --out "$TMP/res" > "$TMP/res.log" 2>&1 || fail "resume failed: $(cat "$TMP/res.log")"
grep -q 'Re-Attention item frequencies restored from the checkpoint' "$TMP/res.log" \
    || fail "the resume does not say where the frequencies come from: $(cat "$TMP/res.log")"
grep -q 'released with the Gaussian mechanism (noise multiplier 10,' "$TMP/res.log" \
    && fail "the resume released the frequencies again: $(cat "$TMP/res.log")"
grep -q 'Re-Attention on (kappa 30, sigma 3.0000, expected batch 32.0)' "$TMP/res.log" \
    || fail "the resume does not attach Re-Attention: $(cat "$TMP/res.log")"
cmp -s "$TMP/ref/model.safetensors" "$TMP/res/model.safetensors" \
    || fail "resumed from step $mid: model.safetensors differs from the uninterrupted run"
cmp -s "$TMP/ref/privacy.json" "$TMP/res/privacy.json" || fail "resumed from step $mid: privacy.json differs"
final_eps() { grep '"final":true' "$1" | grep -o '"epsilon":[0-9.e+-]*' | cut -d: -f2; }
[ "$(final_eps "$TMP/ref/metrics.jsonl")" = "$(final_eps "$TMP/res/metrics.jsonl")" ] \
    || fail "resumed epsilon $(final_eps "$TMP/res/metrics.jsonl") vs $(final_eps "$TMP/ref/metrics.jsonl")"
[ "$(grep -c '"type":[[:space:]]*"gaussian"' "$TMP/res/privacy.json")" -eq 1 ] \
    || fail "privacy.json after the resume does not hold exactly one release event: $(cat "$TMP/res/privacy.json")"
eps_hist=$("$BIN" privacy --history "$TMP/res/privacy.json" --delta 1e-6 | sed -n 's/^epsilon: *\([0-9.]*\).*/\1/p')
awk -v a="$(final_eps "$TMP/res/metrics.jsonl")" -v b="$eps_hist" 'BEGIN { exit !(a > 0 && a - b < 1e-5 && b - a < 1e-5) }' \
    || fail "privacy --history gives $eps_hist, the run $(final_eps "$TMP/res/metrics.jsonl")"
echo "resumed from step $mid of $last: the same model file, privacy.json and epsilon"
"$BIN" train $ra --epochs 1 --out "$TMP/one" > /dev/null 2>&1 || fail "one-epoch run failed"
"$BIN" train --resume "$TMP/one" --epochs 2 > "$TMP/one.log" 2>&1 || fail "resume to epoch 2 failed: $(cat "$TMP/one.log")"
cmp -s "$TMP/ref/model.safetensors" "$TMP/one/model.safetensors" || fail "one epoch + resumed to two: model differs"
cmp -s "$TMP/ref/privacy.json" "$TMP/one/privacy.json" || fail "one epoch + resumed to two: privacy.json differs"

# ---- another noise multiplier on resume: Re-Attention follows the sigma in force ----
"$BIN" train $ra --epochs 1 --out "$TMP/sig" > /dev/null 2>&1 || fail "one-epoch run failed"
expect 0 'Re-Attention on (kappa 30, sigma 6.0000, expected batch 32.0)' -- "$BIN" train --resume "$TMP/sig" --epochs 2 --noise-multiplier 6
expect 0 'Re-Attention on (kappa 30, sigma 6.0000' -- "$BIN" eval --model "$TMP/sig/model.safetensors" --data "$TMP/seq.txt" --format sequences
[ "$(grep -c '"type":[[:space:]]*"gaussian"' "$TMP/sig/privacy.json")" -eq 1 ] || fail "sigma change: release events: $(cat "$TMP/sig/privacy.json")"

# ---- a corrupted frequency tensor in a checkpoint is caught by its checksum ----
mkdir -p "$TMP/bad_ck"
f="$TMP/bad_ck/$(printf 'ckpt-%012d.safetensors' "$mid")"
cp "$TMP/ref/checkpoints/$(basename "$f")" "$f"
hlen=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
printf '\x3f' | dd of="$f" bs=1 seek=$((8 + hlen + 8 + 3)) count=1 conv=notrunc 2>/dev/null # item 1's p_i
expect 2 'tensor reattention.item_freq: checksum mismatch' -- "$BIN" train --resume "$TMP/bad_ck" --out "$TMP/x"

# ---- settings that cannot change on resume ----
expect 2 'cannot resume with reattention-scale 2: the checkpoint has 30' -- "$BIN" train --resume "$TMP/ref" --reattention-scale 2
expect 2 'cannot resume with item-freq public:.*freq.txt: the checkpoint has private' \
    -- "$BIN" train --resume "$TMP/ref" --item-freq "public:$TMP/freq.txt"
expect 2 'cannot resume with item-freq-noise 5: the checkpoint has 10' -- "$BIN" train --resume "$TMP/ref" --item-freq-noise 5
expect 2 'cannot resume with item-freq-cap 4: the checkpoint has 0' -- "$BIN" train --resume "$TMP/ref" --item-freq-cap 4
noRA=${ra%--reattention *}
"$BIN" train $noRA --epochs 1 --out "$TMP/plain" > /dev/null 2>&1 || fail "run without Re-Attention failed"
expect 2 'cannot resume with reattention on: the checkpoint has off' -- "$BIN" train --resume "$TMP/plain" --reattention
cli_finish

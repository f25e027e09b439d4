#!/usr/bin/env bash
# `dpformer clip-check` (the privacy engine's verification interface): every clipping mode writes the
# same per-example norms and clipped sum as the one-example-at-a-time reference (naive), read back
# by an independent parser; ghost refuses a tied embedding; bad batch files are refused clearly; the
# output keeps the batch file's line order; a text classifier is refused (exit 2), not run.
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_clip "$@"
command -v python3 >/dev/null || { echo "cli_clip: python3 not found: skipped"; exit 0; }

awk 'BEGIN { s = 11; for (u = 1; u <= 40; u++) { n = 4 + u % 7; printf "%d", u;
      for (k = 0; k < n; k++) { s = (s * 1103515245 + 12345) % 2147483648; printf " %d", 1 + s % 25 } printf "\n" } }' > "$TMP/data.txt"
printf '1 3 5 3 7 9 3\n2 4 4 4\n3 1 2\n4 25 1 25 1 25 1 25 1 25 1 25 1\n' > "$TMP/batch.txt"

for tie in tied untied; do
    flag=""; [ "$tie" = untied ] && flag="--untied"
    "$BIN" train --data "$TMP/data.txt" --format sequences --epochs 1 --max-len 8 --d-model 16 --n-heads 2 \
        --batch-size 8 --dropout 0.2 $flag --out "$TMP/$tie" --no-progress >/dev/null 2>&1 || fail "train $tie"
    # the sequences loader numbers items by first appearance; the batch file uses the model's ids, which
    # stay in range because the data holds every id 1..25
    for mode in naive auto phantom ghost; do
        "$BIN" clip-check --model "$TMP/$tie/model.safetensors" --batch "$TMP/batch.txt" --clip-mode $mode \
            --max-grad-norm 0.3 --dropout --seed 3 --out "$TMP/$tie-$mode.st" > "$TMP/out.txt" 2>&1
        rc=$?
        if [ "$tie" = tied ] && [ $mode = ghost ]; then
            [ $rc -eq 2 ] && grep -q "tied" "$TMP/out.txt" || fail "ghost on a tied model: exit $rc, $(cat "$TMP/out.txt")"
            continue
        fi
        [ $rc -eq 0 ] || fail "clip-check $tie $mode exited $rc: $(cat "$TMP/out.txt")"
    done
    python3 - "$TMP" "$tie" <<'PY' || fail "$tie: modes disagree"
import json, struct, sys, math
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); data = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; fmt = {"F32": "f", "F64": "d", "I64": "q"}[v["dtype"]]
        out[k] = struct.unpack("<%d%s" % ((e - s) // struct.calcsize(fmt), fmt), data[s:e])
    return h["__metadata__"], out
tmp, tie = sys.argv[1], sys.argv[2]
modes = ["naive", "auto", "phantom"] + (["ghost"] if tie == "untied" else [])
meta, ref = read(f"{tmp}/{tie}-naive.st")
assert meta["clip_mode"] == "naive" and meta["examples"] == "4" and meta["order"] == "file", meta
assert meta["dropout"] == "on" and meta["seed"] == "3" and float(meta["max_grad_norm"]) == 0.3, meta
assert list(ref["user_ids"]) == [1, 2, 3, 4], ref["user_ids"]
assert all(x > 0 for x in ref["norms"]) and any(x > 0.3 for x in ref["norms"]), ref["norms"]
flat = lambda d: [x for k in sorted(d) if k.startswith("clipped_sum.") for x in d[k]]
r = flat(ref)
# the clipped sum of 4 examples clipped to 0.3 has norm at most 1.2
assert math.sqrt(sum(x * x for x in r)) <= 4 * 0.3 + 1e-5
for m in modes[1:]:
    _, o = read(f"{tmp}/{tie}-{m}.st")
    for a, b in zip(o["norms"], ref["norms"]):
        assert abs(a - b) <= 1e-4 * b, (m, a, b)
    x = flat(o)
    num = math.sqrt(sum((p - q) ** 2 for p, q in zip(x, r))); den = math.sqrt(sum(q * q for q in r))
    assert num <= 1e-4 * den, (m, num / den)
PY
done

# the examples come out in the order of the batch file's lines, whatever the user ids: the same lines
# shuffled (and user ids renumbered against the line order) give the same norms, permuted
printf '7 1 2\n\n40 25 1 25 1 25 1 25 1 25 1 25 1\n3 3 5 3 7 9 3\n12 4 4 4\n' > "$TMP/shuffled.txt"
"$BIN" clip-check --model "$TMP/untied/model.safetensors" --batch "$TMP/shuffled.txt" --clip-mode naive \
    --max-grad-norm 0.3 --dropout --seed 3 --out "$TMP/shuffled.st" >/dev/null 2>&1 || fail "clip-check shuffled"
"$BIN" clip-check --model "$TMP/untied/model.safetensors" --batch "$TMP/batch.txt" --clip-mode naive \
    --max-grad-norm 0.3 --out "$TMP/sorted.st" >/dev/null 2>&1 || fail "clip-check sorted"
"$BIN" clip-check --model "$TMP/untied/model.safetensors" --batch "$TMP/shuffled.txt" --clip-mode auto \
    --max-grad-norm 0.3 --out "$TMP/shuffled-nodrop.st" >/dev/null 2>&1 || fail "clip-check shuffled, no dropout"
python3 - "$TMP" <<'PY' || fail "clip-check does not keep the batch file's line order"
import json, struct, sys
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); data = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; fmt = {"F32": "f", "F64": "d", "I64": "q"}[v["dtype"]]
        out[k] = struct.unpack("<%d%s" % ((e - s) // struct.calcsize(fmt), fmt), data[s:e])
    return h["__metadata__"], out
tmp = sys.argv[1]
_, a = read(f"{tmp}/sorted.st")        # lines 1 2 3 4 (users 1..4, in id order)
_, b = read(f"{tmp}/shuffled-nodrop.st")  # the same sequences as lines 3 4 1 2, users 7 40 3 12
assert list(b["user_ids"]) == [7, 40, 3, 12], b["user_ids"]
for i, j in enumerate([2, 3, 0, 1]):
    assert abs(b["norms"][i] - a["norms"][j]) <= 1e-4 * a["norms"][j], (i, b["norms"], a["norms"])
    assert abs(b["losses"][i] - a["losses"][j]) <= 1e-4 * a["losses"][j], (i, b["losses"], a["losses"])
PY

# a text classifier is not a next-item model: refused with exit 2 and a message (it used to crash)
printf 'label\tsentence\n' > "$TMP/t.tsv"
for i in $(seq 1 40); do printf '%d\tword %d\n' $((i % 2)) $i >> "$TMP/t.tsv"; done
"$BIN" train-text --train "$TMP/t.tsv" --max-len 8 --d-model 8 --n-layers 1 --epochs 1 --batch-size 16 \
    --out "$TMP/text" >/dev/null 2>&1 || fail "train-text"
expect 2 "is a text classifier.*does not support classifiers" -- "$BIN" clip-check --model "$TMP/text/model.safetensors" \
    --batch "$TMP/batch.txt" --out "$TMP/x.st"
[ -e "$TMP/x.st" ] && fail "clip-check of a classifier wrote an output"

# --help names what the values are
expect 0 "--batch FILE" -- "$BIN" clip-check --help

# bad batch files
printf '1 3 999\n' > "$TMP/bad1.txt"
out=$("$BIN" clip-check --model "$TMP/tied/model.safetensors" --batch "$TMP/bad1.txt" --out "$TMP/x.st" 2>&1); rc=$?
[ $rc -eq 2 ] && printf '%s' "$out" | grep -q "999" || fail "item out of range: exit $rc: $out"
printf '1 3\n2 5\n' > "$TMP/bad2.txt"
out=$("$BIN" clip-check --model "$TMP/tied/model.safetensors" --batch "$TMP/bad2.txt" --out "$TMP/x.st" 2>&1); rc=$?
[ $rc -eq 2 ] && printf '%s' "$out" | grep -q "fewer than 2" || fail "single-item example: exit $rc: $out"
out=$("$BIN" clip-check --model "$TMP/tied/model.safetensors" --batch "$TMP/nope.txt" --out "$TMP/x.st" 2>&1); rc=$?
[ $rc -eq 2 ] || fail "missing batch file: exit $rc"
out=$("$BIN" clip-check --model "$TMP/tied/model.safetensors" --batch "$TMP/batch.txt" --out "$TMP/x.st" --clip-mode fast 2>&1); rc=$?
[ $rc -eq 2 ] || fail "unknown clip mode: exit $rc"

cli_finish

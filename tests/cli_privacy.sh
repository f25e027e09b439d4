#!/usr/bin/env bash
# `dpformer privacy` from the command line: published values in text and JSON, the stated δ /
# accountant / conversion, calibration, composition through --history and --runs (and the saved history
# reading back to the same ε), and exit status 2 with a clear message for every invalid value; duplicate
# keys refused; --save-history atomic; unmeetable targets and too-fine PLD grids refused with the reason.
# Training runs (train --dp, train-text --dp / --dpfp, RDP and PLD) write a privacy.json from which
# `privacy --history` alone gives back the printed ε; DP keeps the last epoch unless --select-best; a
# budget that allows no step is refused before training.
# Usage: bash tests/cli_privacy.sh /path/to/dpformer
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_privacy "$@"

RUN=(--sample-rate 0.04 --noise-multiplier 1.5)
# Published RDP values (Opacus grid): improved 7.32911, classic 8.07385 at order 4.1.
expect 0 'epsilon: *7.32911 (best order' -- "$BIN" privacy "${RUN[@]}" --steps 2250
expect 0 'delta: *1e-05' -- "$BIN" privacy "${RUN[@]}" --steps 2250
expect 0 'accountant: *rdp, conversion: improved' -- "$BIN" privacy "${RUN[@]}" --steps 2250
expect 0 'epsilon: *8.07385 (best order 4.1)' -- "$BIN" privacy "${RUN[@]}" --steps 2250 --conversion classic
expect 0 'epsilon: *7.32911' -- "$BIN" privacy "${RUN[@]}" --epochs 90
expect 0 'epsilon: *2.39333 (best order 5)' -- "$BIN" privacy --sample-rate 0.01 --noise-multiplier 1 --steps 300 \
    --orders 2,5,10,20,100
expect 0 'epsilon: *0.336344 (best order 23)' -- "$BIN" privacy --runs 1e-5:1.0:10,1e-4:3.0:4 --orders 2:32
expect 0 'edge of the grid' -- "$BIN" privacy --sample-rate 0.01 --noise-multiplier 1 --steps 300 --orders 2,3
# δ at a given ε inverts ε at δ.
expect 0 'delta: *1e-05' -- "$BIN" privacy "${RUN[@]}" --steps 2250 --epsilon 7.329111171484
# PLD: below RDP, states its conversion and δ.
expect 0 'epsilon: *6.76' -- "$BIN" privacy "${RUN[@]}" --steps 2249 --accountant pld
expect 0 'accountant: *pld.*conversion: none' -- "$BIN" privacy "${RUN[@]}" --steps 2249 --accountant pld
# Calibration: Opacus's rule reproduces 1.416; the default is tighter and within the target.
expect 0 'noise multiplier 1.41602' -- "$BIN" privacy --sample-rate 0.04 --steps 2250 --target-epsilon 8 \
    --epsilon-tolerance 0.01
expect 0 'noise multiplier 1.41579' -- "$BIN" privacy --sample-rate 0.04 --steps 2250 --target-epsilon 8
expect 0 '2250 steps fit' -- "$BIN" privacy "${RUN[@]}" --target-epsilon 7.33
# JSON: parseable, with δ, accountant and conversion.
out=$("$BIN" privacy "${RUN[@]}" --steps 2250 --json) || fail "--json exited non-zero"
printf '%s' "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert abs(d["epsilon"] - 7.32911117143) < 1e-9, d
assert d["delta"] == 1e-5 and d["accountant"] == "rdp" and d["conversion"] == "improved", d
assert d["history"]["events"][0]["steps"] == 2250, d
' || fail "JSON output wrong: $out"
# Composition through a saved history: run A then run B equals --runs A,B; the file reads back exactly.
expect 0 'epsilon' -- "$BIN" privacy --sample-rate 0.02 --noise-multiplier 1.1 --steps 700 --save-history "$TMP/a.json"
a=$("$BIN" privacy --history "$TMP/a.json" --sample-rate 0.04 --noise-multiplier 2 --steps 100 --json \
    --save-history "$TMP/ab.json" | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["epsilon"]))')
b=$("$BIN" privacy --runs 0.02:1.1:700,0.04:2:100 --json | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["epsilon"]))')
c=$("$BIN" privacy --history "$TMP/ab.json" --json | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["epsilon"]))')
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] || fail "composition differs: history+run $a, runs $b, saved $c"
expect 0 'noise_multiplier.*1.1000000000000001' -- cat "$TMP/a.json"

# Invalid values: exit 2 and a message naming the problem.
expect 2 'sample-rate must lie in (0, 1]' -- "$BIN" privacy --sample-rate 0 --noise-multiplier 1 --steps 10
expect 2 'sample-rate must lie in (0, 1]' -- "$BIN" privacy --sample-rate 1.5 --noise-multiplier 1 --steps 10
expect 2 'sample-rate must lie in (0, 1]' -- "$BIN" privacy --sample-rate -0.1 --noise-multiplier 1 --steps 10
expect 2 'noise-multiplier must be > 0' -- "$BIN" privacy --sample-rate 0.1 --noise-multiplier 0 --steps 10
expect 2 'noise-multiplier must be > 0' -- "$BIN" privacy --sample-rate 0.1 --noise-multiplier -2 --steps 10
expect 2 'delta must lie in (0, 1)' -- "$BIN" privacy "${RUN[@]}" --steps 10 --delta 0
expect 2 'delta must lie in (0, 1)' -- "$BIN" privacy "${RUN[@]}" --steps 10 --delta 1
expect 2 'delta must lie in (0, 1)' -- "$BIN" privacy "${RUN[@]}" --steps 10 --delta 2 --accountant pld
expect 2 'steps must be >= 0' -- "$BIN" privacy "${RUN[@]}" --steps -5
expect 2 'epochs must be >= 0' -- "$BIN" privacy "${RUN[@]}" --epochs -1
expect 2 'empty' -- "$BIN" privacy "${RUN[@]}" --steps 10 --orders ""
expect 2 'order grid is empty' -- "$BIN" privacy "${RUN[@]}" --steps 10 --orders ","
expect 2 'every order must be > 1' -- "$BIN" privacy "${RUN[@]}" --steps 10 --orders 0.5,2
expect 2 "cannot read 'abc'" -- "$BIN" privacy "${RUN[@]}" --steps 10 --orders abc
expect 2 'accountant must be rdp or pld' -- "$BIN" privacy "${RUN[@]}" --steps 10 --accountant moments
expect 2 'conversion must be improved or classic' -- "$BIN" privacy "${RUN[@]}" --steps 10 --conversion best
expect 2 'target-epsilon must be > 0' -- "$BIN" privacy --sample-rate 0.04 --steps 10 --target-epsilon -1
expect 2 'a run needs' -- "$BIN" privacy --sample-rate 0.04 --steps 10
expect 2 'nothing to account' -- "$BIN" privacy
expect 2 'not both' -- "$BIN" privacy "${RUN[@]}" --steps 10 --epochs 1
expect 2 "cannot read 'x:1'" -- "$BIN" privacy --runs x:1
expect 2 'sample rate must lie in' -- "$BIN" privacy --runs 2:1:10
expect 2 'cannot open' -- "$BIN" privacy --history "$TMP/missing.json"
printf '{"events": [{"type": "poisson_gaussian", "noise_multiplier": -1, "sample_rate": 0.1, "steps": 3}]}' > "$TMP/bad.json"
expect 2 'noise multiplier must be' -- "$BIN" privacy --history "$TMP/bad.json"
expect 2 'unknown flag' -- "$BIN" privacy --sample-rat 0.1
expect 0 'target-epsilon' -- "$BIN" privacy --help

# ---- a key given twice is refused, naming the file and the key ----
EV='{"type": "poisson_gaussian", "noise_multiplier": 1, "sample_rate": 0.1, "steps": 3}'
printf '{"events": [%s], "events": []}' "$EV" > "$TMP/dup1.json"
expect_e 2 'dup1.json: .*duplicate key "events"' -- "$BIN" privacy --history "$TMP/dup1.json"
printf '{"events": [{"type": "poisson_gaussian", "noise_multiplier": 1, "sample_rate": 0.1, "steps": 3, "steps": 300}]}' \
    > "$TMP/dup2.json"
expect_e 2 'dup2.json: .*duplicate key "steps" in event 0' -- "$BIN" privacy --history "$TMP/dup2.json"
printf '{"delta": 1e-6, "delta": 1e-5, "events": [%s]}' "$EV" > "$TMP/dup3.json"
expect_e 2 'dup3.json: .*duplicate key "delta"' -- "$BIN" privacy --history "$TMP/dup3.json"

# ---- --save-history is atomic: a write that fails (file-size limit 0, SIGXFSZ ignored) leaves the old file ----
"$BIN" privacy "${RUN[@]}" --steps 100 --save-history "$TMP/keep.json" > /dev/null || fail "save-history failed"
cp "$TMP/keep.json" "$TMP/keep.orig"
out=$( (ulimit -f 0; trap '' XFSZ; "$BIN" privacy --sample-rate 0.1 --noise-multiplier 1 --steps 10 \
        --save-history "$TMP/keep.json") 2>&1 )
rc=$?
[ "$rc" -ne 0 ] || fail "save-history under a file-size limit of 0 exited 0: $out"
printf '%s' "$out" | grep -q 'keep.json' || fail "save-history write error does not name the file: $out"
cmp -s "$TMP/keep.json" "$TMP/keep.orig" || fail "a failed save-history changed the old file ($(wc -c < "$TMP/keep.json") bytes)"
# ---- an output that is its own input is refused: --save-history onto the --history file (however spelled) ----
expect 2 'is the --history file' -- "$BIN" privacy --history "$TMP/keep.json" --steps 10 --sample-rate 0.1 \
    --noise-multiplier 1 --save-history "$TMP/./keep.json"
cmp -s "$TMP/keep.json" "$TMP/keep.orig" || fail "a refused save-history onto its input changed the file"
[ -z "$(ls -A "$TMP" | grep '^\.keep\.json\.tmp')" ] || fail "a temporary file was left behind: $(ls -A "$TMP")"
# the file saved by privacy records how its epsilon was computed, and reads back to the same epsilon
a=$("$BIN" privacy "${RUN[@]}" --steps 100 --delta 1e-7 --accountant pld --json --save-history "$TMP/pld.json" |
    python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["epsilon"]))')
b=$("$BIN" privacy --history "$TMP/pld.json" --json | python3 -c 'import json,sys; d=json.load(sys.stdin)
assert d["accountant"] == "pld" and d["delta"] == 1e-7 and d["recorded_epsilon_matches"] is True, d
print(repr(d["epsilon"]))')
[ -n "$a" ] && [ "$a" = "$b" ] || fail "privacy --save-history then --history: epsilon $a, then $b"

# ---- a target that cannot be met: the reason, exit 2 ----
expect_e 2 'no noise multiplier can meet target epsilon 0.5 at delta 1e-300.*conversion' -- \
    "$BIN" privacy --sample-rate 0.04 --steps 100 --target-epsilon 0.5 --delta 1e-300
out=$("$BIN" privacy --sample-rate 0.04 --steps 100 --target-epsilon 0.5 --delta 1e-300 2>&1)
printf '%s' "$out" | grep -q 'earlier events' && fail "blames earlier events that do not exist: $out"

# ---- PLD grid: a tiny --pld-interval is estimated and refused at once (it asked for 6.4e12 doubles) ----
for h in 1e-12 1e-8; do
    out=$(timeout 20 "$BIN" privacy "${RUN[@]}" --steps 2249 --accountant pld --pld-interval $h 2>&1)
    rc=$?
    [ "$rc" -eq 2 ] || fail "--pld-interval $h: exit $rc, expected 2: $out"
    printf '%s' "$out" | grep -Eq -- "--pld-interval [0-9.e+-]+: .*about [0-9.e+]+ points .*GB.*limit is [0-9]+ points.*--pld-interval [0-9.e-]+ or larger" \
        || fail "--pld-interval $h: message lacks the flag, the estimate or the limit: $out"
done
out=$(timeout 20 "$BIN" privacy --sample-rate 0.04 --noise-multiplier 1.5 --target-epsilon 5 --accountant pld \
      --pld-interval 1e-7 2>&1)
[ $? -eq 2 ] || fail "--pld-interval 1e-7 for a step budget: not refused at once: $out"
expect_e 2 '--pld-interval must be a finite number > 0' -- "$BIN" privacy "${RUN[@]}" --steps 10 --accountant pld --pld-interval 0

# ---- training runs write a self-describing privacy.json; `privacy --history` gives back the printed epsilon ----
cd "$TMP" || exit 1
awk 'BEGIN { s = 7
    for (u = 1; u <= 60; u++) { n = 5 + (u * 7) % 8
        for (k = 0; k < n; k++) { s = (s * 1103515245 + 12345) % 2147483648; print u, 1 + (u + k * k + int(s / 65536)) % 30 } } }' \
    > "$TMP/inter.txt"
awk 'BEGIN { srand(3); split("good great fine love nice", P); split("bad awful poor hate dull", N);
     split("the a movie film plot was is and it", F); print "label\tsentence";
     for (i = 0; i < 300; i++) { y = int(rand() * 2); s = F[1 + int(rand() * 9)] " " F[1 + int(rand() * 9)];
       w = y ? P[1 + int(rand() * 5)] : N[1 + int(rand() * 5)]; printf "%d\t%s %s %s\n", y, s, w, F[1 + int(rand() * 9)] } }' \
    > "$TMP/train.tsv"
head -1 "$TMP/train.tsv" > "$TMP/dev.tsv"; tail -50 "$TMP/train.tsv" >> "$TMP/dev.tsv"
REC=(train --data "$TMP/inter.txt" --epochs 3 --max-len 8 --d-model 16 --batch-size 16 --no-progress --no-checkpoints)
TXT=(train-text --train "$TMP/train.tsv" --dev "$TMP/dev.tsv" --max-len 12 --d-model 8 --n-heads 1 --n-layers 1
     --epochs 2 --batch-size 64 --no-progress)

cat > "$TMP/check_ledger.py" <<'PY'
import json, sys
led, re_, printed, unit, covers = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3]), sys.argv[4], sys.argv[5]
for k in ("epsilon", "delta", "accountant", "privacy_unit", "epsilon_covers", "model_selection", "selection_covered",
          "command", "mechanism", "events"):
    assert k in led, k
assert unit in led["privacy_unit"] and covers in led["epsilon_covers"], led
assert led["delta"] == 1e-6, led
if led["accountant"] == "pld":
    assert led["pld_interval"] == 1e-4 and "pld_tail_mass" in led, led
else:
    assert led["rdp_orders"] == "default" and led["rdp_conversion"] == "improved", led
assert re_["accountant"] == led["accountant"] and re_["delta"] == led["delta"], re_
assert re_["epsilon"] == led["epsilon"] == re_["recorded_epsilon"], (re_["epsilon"], led["epsilon"])
assert re_["recorded_epsilon_matches"] is True, re_
assert abs(round(re_["epsilon"], 3) - printed) < 1e-9, (re_["epsilon"], printed)
assert led["model_selection"].startswith("last epoch") and led["selection_covered"] is True, led
PY

# recheck NAME UNIT COVERS -- training command: the run's printed epsilon, the ledger's fields, and the
# recomputation from the file alone (the same epsilon bit for bit, said to be the same)
recheck() {
    local name=$1 unit=$2 covers=$3
    shift 4
    local out rc printed
    out=$("$BIN" "$@" --out "$TMP/$name" 2>&1)
    rc=$?
    [ "$rc" -eq 0 ] || { fail "$name: training exited $rc: $out"; return; }
    printed=$(printf '%s\n' "$out" | sed -n 's/^privacy: .*(epsilon = \([0-9.]*\), delta.*/\1/p' | head -1)
    [ -n "$printed" ] || { fail "$name: no epsilon printed: $out"; return; }
    printf '%s' "$out" | grep -q "dpformer privacy --history $TMP/$name/privacy.json" || fail "$name: recipe not printed"
    "$BIN" privacy --history "$TMP/$name/privacy.json" --json > "$TMP/$name.json" 2>&1 || fail "$name: privacy --history failed"
    python3 "$TMP/check_ledger.py" "$TMP/$name/privacy.json" "$TMP/$name.json" "$printed" "$unit" "$covers" \
        || fail "$name: ledger or recomputation wrong (printed $printed): $(cat "$TMP/$name/privacy.json") $(cat "$TMP/$name.json")"
    expect_e 0 "recorded: +epsilon .*: the same" -- "$BIN" privacy --history "$TMP/$name/privacy.json"
}
recheck rec_rdp "user" "model parameters" -- "${REC[@]}" --dp --target-epsilon 4 --accountant rdp
recheck rec_pld "user" "model parameters" -- "${REC[@]}" --dp --noise-multiplier 1.2 --accountant pld
recheck txt_rdp "sentence" "trained weights" -- "${TXT[@]}" --dp --target-epsilon 3 --accountant rdp
recheck txt_pld "sentence" "trained weights" -- "${TXT[@]}" --dp --noise-multiplier 1.2 --accountant pld
recheck fp_rdp "sentence" "NOT the trained weights" -- "${TXT[@]}" --dpfp --micro-batches 2 --target-epsilon 3 --accountant rdp
recheck fp_pld "sentence" "NOT the trained weights" -- "${TXT[@]}" --dpfp --micro-batches 2 --noise-multiplier 1.2 --accountant pld
# flags that differ from what the file records are applied and said; the recorded epsilon is still shown
expect_e 0 'note: +--delta 1e-05 differs from the delta recorded in .*\(1e-06\)' -- \
    "$BIN" privacy --history "$TMP/rec_pld/privacy.json" --delta 1e-5
expect_e 0 'note: +--accountant rdp differs from the accountant recorded in .*\(pld\)' -- \
    "$BIN" privacy --history "$TMP/rec_pld/privacy.json" --accountant rdp
expect_e 0 'recorded: +epsilon .*for its own events only' -- \
    "$BIN" privacy --history "$TMP/rec_rdp/privacy.json" --runs 0.1:2:10
# a file with only events (as written before) still loads, and says what it lacks
printf '{"events": [%s]}' "$EV" > "$TMP/old.json"
expect_e 0 'note: .*records no delta or accountant' -- "$BIN" privacy --history "$TMP/old.json"

# ---- model selection under DP: the last epoch by default; --select-best opt-in, with the caveat ----
expect_e 0 'kept epoch 3 \(the last\)' -- "$BIN" "${REC[@]}" --dp --noise-multiplier 1 --out "$TMP/sel_last"
out=$("$BIN" "${REC[@]}" --dp --noise-multiplier 1 --select-best --out "$TMP/sel_best" 2>&1)
printf '%s' "$out" | grep -q 'kept epoch [0-9] by validation NDCG@10' || fail "--select-best: not selected by validation: $out"
printf '%s' "$out" | grep -q 'NOT the choice of the kept epoch' || fail "--select-best: no caveat: $out"
grep -q '"selection_covered":[[:space:]]*false' "$TMP/sel_best/privacy.json" || fail "--select-best not recorded in privacy.json"
expect_e 0 'selection: .*NOT covered by epsilon' -- "$BIN" privacy --history "$TMP/sel_best/privacy.json"
expect_e 0 'kept epoch [0-9] by validation NDCG@10' -- "$BIN" "${REC[@]}" --out "$TMP/sel_np"
expect_e 2 'keep-last and --select-best exclude each other' -- \
    "$BIN" "${REC[@]}" --dp --noise-multiplier 1 --keep-last --select-best --out "$TMP/x"
expect_e 0 'the last epoch is kept, so no choice looks at the dev set' -- \
    "$BIN" "${TXT[@]}" --dp --noise-multiplier 1 --out "$TMP/tsel"
expect_e 0 'CAVEAT: the kept epoch was chosen by dev accuracy' -- \
    "$BIN" "${TXT[@]}" --dp --noise-multiplier 1 --select-best --out "$TMP/tsel2"
grep -q '"selection_covered":[[:space:]]*false' "$TMP/tsel2/privacy.json" || fail "train-text --select-best not recorded"

# ---- a budget that allows no step is refused before training (exit 2), nothing written ----
expect_e 2 'noise multiplier 0.5 allows no training step within target epsilon 0.1' -- \
    "$BIN" "${REC[@]}" --dp --noise-multiplier 0.5 --target-epsilon 0.1 --out "$TMP/zero"
[ -e "$TMP/zero" ] && fail "a refused run wrote $TMP/zero: $(ls "$TMP/zero")"
expect_e 2 'no noise multiplier can meet target epsilon 0.5 at delta 1e-300' -- \
    "$BIN" "${REC[@]}" --dp --target-epsilon 0.5 --delta 1e-300 --out "$TMP/zero"
out=$("$BIN" "${REC[@]}" --dp --target-epsilon 0.5 --delta 1e-300 --out "$TMP/zero" 2>&1)
printf '%s' "$out" | grep -q 'earlier events' && fail "train blames earlier events that do not exist: $out"
expect_e 2 'allows no training step.*4 mechanism events' -- \
    "$BIN" "${TXT[@]}" --dpfp --micro-batches 4 --noise-multiplier 1 --target-epsilon 0.6 --out "$TMP/zero"
expect_e 2 'allows no training step' -- "$BIN" "${TXT[@]}" --dp --noise-multiplier 0.3 --target-epsilon 0.1 --out "$TMP/zero"
[ -e "$TMP/zero" ] && fail "a refused text run wrote $TMP/zero"

cli_finish

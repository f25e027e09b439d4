#!/usr/bin/env bash
# `dpformer train --dp --reattention`: the private release of the item frequencies is an event in the
# run's history (and `dpformer privacy --history` recomputes the reported epsilon from it), a public
# frequency file costs nothing and is named, and bad settings or files are refused clearly.
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
expect 1 "bad.txt:2: fraction" -- "$BIN" train $small --dp --noise-multiplier 1 --reattention --item-freq "public:$TMP/bad.txt" --out "$TMP/bad"
expect 2 "needs --dp" -- "$BIN" train $small --reattention --out "$TMP/x"
expect 2 "expected private or public:FILE" -- "$BIN" train $small --dp --noise-multiplier 1 --reattention --item-freq pub --out "$TMP/x"
cli_finish

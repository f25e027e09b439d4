#!/usr/bin/env bash
# `dpformer privacy` from the command line: published values in text and JSON, the stated δ /
# accountant / conversion, calibration, composition through --history and --runs (and the saved history
# reading back to the same ε), and exit status 2 with a clear message for every invalid value.
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

cli_finish

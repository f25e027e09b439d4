#!/usr/bin/env bash
# dpformer audit: the controls of docs/audit.md on a small synthetic task. Without noise (and a clip
# norm too large to matter) the canaries are found and the lower bound is well above 1 (the audit has
# power); DP-SGD at epsilon 1 gives a bound below 1 and below the accountant's epsilon (verdict
# "consistent", exit 0); the JSON report and audit.json carry the documented keys; bad flags exit 2.
# Runs are seeded (--seeded-noise) so that the checks are reproducible.
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_audit "$@"

have_python=0
python3 -c 'import json' 2>/dev/null && have_python=1
small="--users 1000 --items 300 --canaries 500 --epochs 10 --batch-size 128 --no-progress --seeded-noise --seed 3"

# ---- power: no noise, no effective clipping ----
out=$("$BIN" audit $small --dp --noise-multiplier 0 --max-grad-norm 1000 --json --out "$TMP/nonoise" 2>"$TMP/nonoise.err")
rc=$?
[ "$rc" -eq 0 ] || fail "no-noise audit exited $rc: $(cat "$TMP/nonoise.err")"
grep -q "no privacy guarantee" "$TMP/nonoise.err" || fail "no-noise audit does not say the run has no guarantee"
if [ "$have_python" -eq 1 ]; then
    printf '%s' "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in ("epsilon", "epsilon_lower_bound", "confidence", "canaries", "guesses", "correct", "auc", "included",
          "hypotheses", "tpr_at_fpr", "delta", "verdict"):
    assert k in d, k
assert d["epsilon"] is None, d["epsilon"]
assert d["canaries"] == 500 and abs(d["confidence"] - 0.95) < 1e-12, d
assert d["epsilon_lower_bound"] > 1.5, d          # the audit has power
assert d["auc"] > 0.9, d
assert 0 < d["correct"] <= d["guesses"] <= 500, d
assert "canary_scores" not in d                 # printed report: no per-canary data
' || fail "no-noise audit: bad JSON or no power: $out"
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert len(d["canary_scores"]) == 500 and len(d["canary_included"]) == 500
assert sum(d["canary_included"]) == d["included"]
' "$TMP/nonoise/audit.json" || fail "audit.json lacks the per-canary scores and bits"
fi

# ---- DP-SGD at epsilon 1: a bound below 1 and below the accountant's epsilon ----
out=$("$BIN" audit $small --dp --target-epsilon 1 --json --out "$TMP/eps1" 2>"$TMP/eps1.err")
rc=$?
[ "$rc" -eq 0 ] || fail "epsilon-1 audit exited $rc: $(cat "$TMP/eps1.err")"
if [ "$have_python" -eq 1 ]; then
    printf '%s' "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert abs(d["epsilon"] - 1.0) < 1e-6, d
assert d["epsilon_lower_bound"] < 1.0 and d["epsilon_lower_bound"] <= d["epsilon"], d
assert d["verdict"].startswith("consistent"), d
' || fail "epsilon-1 audit: $out"
fi
expect 0 "verdict: consistent" -- "$BIN" audit $small --dp --target-epsilon 1 --out "$TMP/eps1b"
expect 0 "lower bound: epsilon >= " -- "$BIN" audit $small --dp --target-epsilon 1 --guesses 50 --out "$TMP/eps1c"

# ---- bad input: exit 2, the flag named ----
expect 2 "unknown task 'images'" -- "$BIN" audit $small --task images
expect 2 "guesses 600 is more than the 500 canaries" -- "$BIN" audit $small --guesses 600
expect 2 "\-\-canaries" -- "$BIN" audit $small --canaries 1
expect 2 "\-\-canary-len" -- "$BIN" audit $small --canary-len 2
expect 2 "is a DP-SGD flag" -- "$BIN" audit --users 100 --noise-multiplier 1
expect 2 "\-\-significance" -- "$BIN" audit $small --significance 0.9
expect 0 "\-\-canaries N" -- "$BIN" audit --help

cli_finish

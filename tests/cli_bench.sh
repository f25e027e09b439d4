#!/usr/bin/env bash
# `dpformer bench step` from the command line, with a tiny model: --compete N starts N busy processes
# for the timed runs and leaves none behind, the JSON lines name the load and the per-example norm form
# of each layer shape (DP variants only), ghost needs --untied, bad flags exit 2; and the tool runs with passive OpenMP
# waiting unless the user chose a policy (`--version` shows which).
# Usage: bash tests/cli_bench.sh /path/to/dpformer
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_bench "$@"
cd "$TMP" || exit 1

# ---- OpenMP waiting policy ----
out=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u KMP_BLOCKTIME -u DPFORMER_NO_REEXEC "$BIN" --version 2>&1)
printf '%s' "$out" | grep -q 'waiting threads sleep (OMP_WAIT_POLICY=PASSIVE)' || fail "no passive waiting by default: $out"
out=$(OMP_WAIT_POLICY=ACTIVE "$BIN" --version 2>&1)
printf '%s' "$out" | grep -q 'waiting threads spin (OMP_WAIT_POLICY set)' || fail "the user's policy is not kept: $out"
out=$(env -u OMP_WAIT_POLICY DPFORMER_NO_REEXEC=1 "$BIN" --version 2>&1)
printf '%s' "$out" | grep -q "as the OpenMP runtime's settings say" || fail "DPFORMER_NO_REEXEC is not honoured: $out"

# ---- bench step --compete, norm forms ----
TINY=(bench step --shape ml1m --batch 2 --d-model 8 --steps 1 --rounds 1 --warmup 0 --threads 1)
out=$("$BIN" "${TINY[@]}" --variants nonprivate,auto --compete 2 --json 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "bench step --compete 2 exited $rc: $out"
[ "$(printf '%s\n' "$out" | grep -c '"bench":"step",.*"compete":2')" -eq 2 ] || fail "no compete key on both variants: $out"
printf '%s\n' "$out" | grep -q '"bench":"step_norm_forms","shape":"ml1m","variant":"auto","layers":\[{"layer":"output","in":8,"out":3417,"gram_examples":0,"instantiated_examples":2}' \
    || fail "no norm forms line for auto (output layer, d 8, 200 rows: both examples instantiated): $out"
printf '%s\n' "$out" | grep -q '"step_norm_forms".*"variant":"nonprivate"' && fail "a non-private variant reports norm forms: $out"
# the barrier-free reference (one thread here) timed idle and twice under the load, and the CPU time per step
ref=$(printf '%s\n' "$out" | grep '"bench":"step_reference","compete":2,"threads":1,')
[ -n "$ref" ] || fail "no barrier-free reference line under --compete 2: $out"
printf '%s\n' "$ref" | awk '{ match($0, /"kept":[0-9.]*/); k = substr($0, RSTART + 7, RLENGTH - 7) + 0
    match($0, /"idle_ms":[0-9.]*/); i = substr($0, RSTART + 10, RLENGTH - 10) + 0
    exit !(i > 50 && k > 0.05 && k < 1.5) }' || fail "reference: implausible idle time or kept share: $ref"
[ "$(printf '%s\n' "$out" | grep -c '"bench":"step",.*"cpu_ms_per_step":[1-9]')" -eq 2 ] \
    || fail "no positive CPU time per step on both variants: $out"
sleep 0.2
left=$(pgrep -f -- "--compete 2 --json" 2>/dev/null)
[ -z "$left" ] || fail "processes left behind after bench step --compete: $left"
out=$("$BIN" "${TINY[@]}" --variants nonprivate,phantom 2>&1)
printf '%s' "$out" | grep -Eq 'phantom +per-example norm form: output 8x3417 Gram 100%, linear ' || fail "no norm form line in the text output: $out"
printf '%s' "$out" | grep -q 'competing' && fail "an idle run mentions competing processes: $out"
# ghost clipping: refused on the tied model, timed with --untied (the JSON says which)
expect_e 2 'ghost clipping cannot clip a tied embedding; time it with --untied' -- "$BIN" "${TINY[@]}" --variants nonprivate,ghost
out=$("$BIN" "${TINY[@]}" --variants nonprivate,ghost --untied --json 2>&1) || fail "bench step --untied ghost: $out"
[ "$(printf '%s\n' "$out" | grep -c '"bench":"step",.*"tied":false,"variant":"\(nonprivate\|ghost\)"')" -eq 2 ] ||
    fail "no untied lines for nonprivate and ghost: $out"
expect_e 2 'compete' -- "$BIN" "${TINY[@]}" --compete -1
expect_e 2 'compete' -- "$BIN" "${TINY[@]}" --compete 65
cli_finish

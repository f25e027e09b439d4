# Shared harness of the command-line test scripts (tests/cli_*.sh), sourced after `set -u`:
#   cli_init NAME "$@"   sets BIN (the dpformer binary, first argument) and a temporary folder TMP
#                        removed on exit;
#   fail MSG             counts a failed check;
#   expect STATUS PATTERN -- command...      exit status and a basic regular expression in stdout+stderr;
#   expect_e STATUS PATTERN -- command...    the same with an extended regular expression;
#   cli_finish           prints the summary line and exits 1 if any check failed.
cli_init() {
    CLI_NAME=$1
    BIN=${2:?usage: $CLI_NAME.sh /path/to/dpformer}
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/dpformer-$CLI_NAME-XXXXXX")
    trap 'rm -rf "$TMP"' EXIT
    fails=0
}

fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

cli_expect() {
    local mode=$1 want=$2 pattern=$3
    shift 4
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $out"
    printf '%s' "$out" | grep $mode -- "$pattern" || fail "'$*' output lacks '$pattern': $out"
}
expect() { cli_expect -q "$@"; }
expect_e() { cli_expect -Eq "$@"; }

cli_finish() {
    if [ "$fails" -gt 0 ]; then
        echo "$CLI_NAME: $fails check(s) failed" >&2
        exit 1
    fi
    echo "$CLI_NAME: all checks passed"
}

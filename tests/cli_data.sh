#!/usr/bin/env bash
# `dpformer data stats` from the command line: output on small files written here (and on the real
# amazon-games file when $DPFORMER_DATA has it), JSON validity, and exit status 2 with a
# "file:line: field" message for malformed files, unknown flags and bad usage.
# Usage: bash tests/cli_data.sh /path/to/dpformer
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_data "$@"

printf '1 10\n1 11\n1 12\n2 11\n2 12\n2 13\n3 10\n' > "$TMP/good_interactions.txt"
expect 0 'users  *3$' -- "$BIN" data stats --data "$TMP/good_interactions.txt"
expect 0 'interactions  *7$' -- "$BIN" data stats --data "$TMP/good_interactions.txt"
expect 0 'format interactions' -- "$BIN" data stats --data "$TMP/good_interactions.txt"
expect 0 'users with valid/test target 2' -- "$BIN" data stats --data "$TMP/good_interactions.txt"
expect 0 'popularity test' -- "$BIN" data stats --data "$TMP/good_interactions.txt" --baseline
expect 0 '"users": 3' -- "$BIN" data stats --data "$TMP/good_interactions.txt" --json
out=$("$BIN" data stats --data "$TMP/good_interactions.txt" --json --baseline)
if command -v python3 >/dev/null; then
    printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["stats"]["items"] == 4 and "test" in d["popularity"]' \
        || fail "--json --baseline is not the expected JSON object: $out"
fi
[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "--json output is not one line: $out"
printf '1::5::3::100\n1::6::4::90\n' > "$TMP/ratings.dat"
expect 0 'format ml-dat' -- "$BIN" data stats --data "$TMP/ratings.dat"
expect 2 'ratings.dat:1: user:' -- "$BIN" data stats --data "$TMP/ratings.dat" --format sequences --json
# a pipe is read once (format detection and loading share the read)
out=$(printf '1 10\n1 11\n' | "$BIN" data stats --data /dev/stdin 2>&1) || fail "reading a pipe: $out"
printf '%s' "$out" | grep -q 'interactions  *2$' || fail "reading a pipe: $out"
expect 0 'synthetic dataset' -- "$BIN" data stats --synthetic
expect 0 'sub-commands' -- "$BIN" data --help
# --help names what the values are
expect 0 '\-\-data FILE' -- "$BIN" data stats --help
expect 0 '\-\-format FMT' -- "$BIN" data stats --help
expect 0 '--exclude-seen' -- "$BIN" data stats --help

# malformed files: status 2, message "path:line: field:"
printf '1 10\n1 x11\n' > "$TMP/bad_item.txt"
expect 2 "bad_item.txt:2: item:" -- "$BIN" data stats --data "$TMP/bad_item.txt"
printf '1 10\n\n1 10 20 30\n' > "$TMP/bad_fields.txt"
expect 2 "bad_fields.txt:3: fields:" -- "$BIN" data stats --data "$TMP/bad_fields.txt" --format interactions
printf '1 2 3\n2 3 4\n1 5 6\n' > "$TMP/dup_sequences.txt"
expect 2 "dup_sequences.txt:3: user:" -- "$BIN" data stats --data "$TMP/dup_sequences.txt"
printf '1\t2\t3\t-4x\n' > "$TMP/u.data"
expect 2 "u.data:1: timestamp:" -- "$BIN" data stats --data "$TMP/u.data"
: > "$TMP/empty.txt"
expect 2 "empty.txt: file: empty" -- "$BIN" data stats --data "$TMP/empty.txt"
expect 2 "cannot open" -- "$BIN" data stats --data "$TMP/missing.txt"

# bad usage: status 2
expect 2 "unknown flag '--frobnicate'" -- "$BIN" data stats --data "$TMP/good_interactions.txt" --frobnicate
expect 2 "unknown format 'csv'" -- "$BIN" data stats --data "$TMP/good_interactions.txt" --format csv
expect 2 "exactly one of" -- "$BIN" data stats
expect 2 "exactly one of" -- "$BIN" data stats --synthetic --data "$TMP/good_interactions.txt"
expect 2 "needs --baseline" -- "$BIN" data stats --synthetic --exclude-seen
expect 2 "unknown sub-command" -- "$BIN" data frobnicate
expect 2 "sub-commands" -- "$BIN" data

# the real file, when present
GAMES="${DPFORMER_DATA:-}/amazon-games/interactions.txt"
if [ -n "${DPFORMER_DATA:-}" ] && [ -f "$GAMES" ]; then
    expect 0 'users  *31013$' -- "$BIN" data stats --data "$GAMES"
    expect 0 'popularity test   NDCG@10 0.0098' -- "$BIN" data stats --data "$GAMES" --baseline
else
    echo "cli_data: real dataset not found; skipped that part"
fi

cli_finish

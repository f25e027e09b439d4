#!/usr/bin/env bash
# Fault injection through the built binary. Every case makes a command fail on purpose and checks
# three things: a non-zero exit status, a message naming the file concerned, and that the outputs of
# an earlier, finished run (model, metrics, checkpoints) are exactly as they were.
#   - truncated files: a model (eval, clip-check), a checkpoint (--resume), a data file (train);
#   - a flipped bit in a model file: eval, eval-text and clip-check refuse it (checksums), naming the
#     tensor;
#   - SIGTERM during train: exit status 143, a checkpoint, and the run resumes to its end;
#   - a full disk: `ulimit -f` in a subshell, with SIGXFSZ left as it is (the binary ignores it
#     itself): the write fails with "File too large", naming the file, and leaves no temporary file;
#   - read-only output folders (as root: with CAP_DAC_OVERRIDE dropped through setpriv);
#   - an output that is one of the inputs, however spelled (train, train-text, clip-check);
#   - a fresh run that fails before it starts (a missing --item-freq file) into a finished run's
#     folder: nothing of the earlier run is touched.
# Usage: bash tests/cli_faults.sh /path/to/dpformer
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_faults "$@"
case $BIN in /*) ;; *) BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN") ;; esac
cd "$TMP" || exit 1

# 200 users with 8..27 items each over 120 items
awk 'BEGIN { s = 11
    for (u = 1; u <= 200; u++) { n = 8 + (u * 7) % 20
        for (k = 0; k < n; k++) { s = (s * 1103515245 + 12345) % 2147483648; print u, 1 + (u + k * k + int(s / 65536)) % 120 } } }' \
    > "$TMP/data.txt"
D=(--data "$TMP/data.txt")
A=(--format interactions --max-len 12 --d-model 16 --n-heads 2 --batch-size 16 --no-progress
   --threads 1 --seed 7)
printf '1 3 5 3 7 9 3\n2 4 4 4\n3 1 2\n' > "$TMP/batch.txt"

# snap DIR: every file below DIR (hidden ones too) with its checksum, one per line, sorted
snap() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r md5sum) 2>/dev/null; }
# intact WHAT: the finished run in $TMP/run is as it was
intact() {
    [ "$(snap "$TMP/run")" = "$RUN" ] || fail "$1: the earlier run's files changed: $(snap "$TMP/run" | diff <(printf '%s\n' "$RUN") - | tr '\n' ' ')"
}
# no_temps DIR WHAT: no temporary file of an atomic write left in DIR (or below it)
no_temps() {
    local left
    left=$(find "$1" -name '.*.tmp-*' 2>/dev/null)
    [ -z "$left" ] || fail "$2: temporary files left: $left"
}
# flip FILE OFFSET: xor one byte of FILE (OFFSET from the end when negative) with 0x01
flip() {
    local size at b
    size=$(wc -c < "$1")
    at=$2
    [ "$at" -lt 0 ] && at=$((size + at))
    b=$(od -An -tu1 -j "$at" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$at" count=1 conv=notrunc 2>/dev/null
}

# ---- the earlier run that every case below must leave as it is ----
"$BIN" train "${D[@]}" "${A[@]}" --epochs 2 --out "$TMP/run" > "$TMP/run.log" 2>&1 || fail "the earlier run failed: $(cat "$TMP/run.log")"
M="$TMP/run/model.safetensors"
[ -s "$M" ] && [ -s "$TMP/run/metrics.jsonl" ] && [ "$(ls "$TMP/run/checkpoints" | wc -l)" -eq 2 ] ||
    fail "the earlier run lacks its outputs: $(ls -R "$TMP/run")"
RUN=$(snap "$TMP/run")
"$BIN" clip-check --model "$M" --batch "$TMP/batch.txt" --out "$TMP/clip.st" > /dev/null 2>&1 || fail "clip-check failed"
cp "$TMP/clip.st" "$TMP/clip.saved"

# ---- truncated files ----
head -c 3000 "$M" > "$TMP/short.safetensors"
expect 2 'short.safetensors: .*truncated' -- "$BIN" eval --model "$TMP/short.safetensors" --data "$TMP/data.txt"
expect 2 'short.safetensors: .*truncated' -- "$BIN" clip-check --model "$TMP/short.safetensors" --batch "$TMP/batch.txt" \
    --out "$TMP/clip.st"
cmp -s "$TMP/clip.st" "$TMP/clip.saved" || fail "clip-check on a truncated model changed its earlier output"
mkdir "$TMP/ck"
newest=$(ls "$TMP/run/checkpoints" | tail -1)
head -c 20000 "$TMP/run/checkpoints/$newest" > "$TMP/ck/$newest"
expect 2 "ck/$newest: .*truncated" -- "$BIN" train --resume "$TMP/ck"
[ -f "$TMP/ck/$newest" ] || fail "the only (truncated) checkpoint was moved away"
head -c 1001 "$TMP/data.txt" > "$TMP/cut.txt" # ends inside a line: "user" without an item
expect_e 2 'cut.txt:[0-9]+: .*expected 2 or 3 fields' -- "$BIN" train "${A[@]}" --data "$TMP/cut.txt" --epochs 1 --out "$TMP/run"
intact "train on a truncated data file"
# the same cut at a line end is a valid, smaller dataset: not the one the checkpoints were written for
head -n 1000 "$TMP/data.txt" > "$TMP/less.txt"
expect 2 "ckpt-.*written for another dataset" -- "$BIN" train --resume "$TMP/run" --epochs 3 --data "$TMP/less.txt"
intact "resume with a truncated data file"

# ---- a flipped bit in a model file: refused by every reader, naming the file and the tensor ----
cp "$M" "$TMP/flip.safetensors"
flip "$TMP/flip.safetensors" -300
expect 2 'flip.safetensors: tensor [a-z_.0-9]*: checksum mismatch' -- "$BIN" eval --model "$TMP/flip.safetensors" \
    --data "$TMP/data.txt"
expect 2 'flip.safetensors: tensor [a-z_.0-9]*: checksum mismatch' -- "$BIN" clip-check --model "$TMP/flip.safetensors" \
    --batch "$TMP/batch.txt" --out "$TMP/clip.st"
cmp -s "$TMP/clip.st" "$TMP/clip.saved" || fail "clip-check on a corrupted model changed its earlier output"
# a header byte: a digit of the configuration changed (the file stays well-formed)
cp "$M" "$TMP/meta.safetensors"
at=$(grep -abo '\\"dropout\\":0' "$TMP/meta.safetensors" | head -1 | cut -d: -f1)
if [ -n "$at" ]; then
    flip "$TMP/meta.safetensors" $((at + 14)) # the dropout 0.1...: 0.0..., still a valid configuration
    expect 2 'meta.safetensors: metadata checksum mismatch' -- "$BIN" eval --model "$TMP/meta.safetensors" --data "$TMP/data.txt"
else
    fail "no dropout field found in the model header"
fi
# a text classifier
awk 'BEGIN { srand(3); split("good great fine love nice", P); split("bad awful poor hate dull", N); print "label\tsentence";
     for (i = 0; i < 300; i++) { y = int(rand() * 2); w = y ? P[1 + int(rand() * 5)] : N[1 + int(rand() * 5)];
       printf "%d\tthe film was %s\n", y, w } }' > "$TMP/text.tsv"
"$BIN" train-text --train "$TMP/text.tsv" --max-len 12 --d-model 8 --n-heads 2 --n-layers 1 --epochs 1 \
    --batch-size 64 --no-progress --out "$TMP/text" > /dev/null 2>&1 || fail "train-text failed"
expect 0 'accuracy' -- "$BIN" eval-text --model "$TMP/text/model.safetensors" --data "$TMP/text.tsv"
cp "$TMP/text/model.safetensors" "$TMP/textflip.safetensors"
flip "$TMP/textflip.safetensors" -40
expect 2 'textflip.safetensors: tensor [a-z_.0-9]*: checksum mismatch' -- "$BIN" eval-text \
    --model "$TMP/textflip.safetensors" --data "$TMP/text.tsv"

# ---- SIGTERM during train: exit status 143, a checkpoint, resumable ----
"$BIN" train "${D[@]}" "${A[@]}" --epochs 40 --checkpoint-every 1 --out "$TMP/term" > "$TMP/term.log" 2>&1 &
pid=$!
for _ in $(seq 1 500); do
    [ -n "$(ls "$TMP/term/checkpoints" 2>/dev/null)" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
done
kill -TERM $pid 2>/dev/null
{ wait $pid; } 2>/dev/null
rc=$?
if [ $rc -eq 143 ]; then
    grep -q "SIGTERM: stopped after step [0-9]*.*checkpoint .*term/checkpoints/ckpt-" "$TMP/term.log" ||
        fail "SIGTERM: no stop message naming the checkpoint: $(cat "$TMP/term.log")"
    [ -e "$TMP/term/model.safetensors" ] && fail "SIGTERM: a stopped run wrote a model file"
    no_temps "$TMP/term" "SIGTERM"
    expect 0 'resuming from .*term/checkpoints/ckpt-' -- "$BIN" train --resume "$TMP/term" --epochs 2
    [ -s "$TMP/term/model.safetensors" ] || fail "SIGTERM: the resumed run wrote no model"
    [ "$(grep -c '"final":true' "$TMP/term/metrics.jsonl")" -eq 1 ] || fail "SIGTERM: the resumed metrics.jsonl has no final line"
else
    fail "SIGTERM: exit status $rc, expected 143: $(cat "$TMP/term.log")"
fi

# ---- a full disk: `ulimit -f` (1 KiB blocks), SIGXFSZ not ignored by the shell ----
# clip-check: its output is larger than 8 KiB; the earlier output stays
out=$( (ulimit -f 8; exec "$BIN" clip-check --model "$M" --batch "$TMP/batch.txt" --out "$TMP/clip.st") 2>&1 )
rc=$?
[ $rc -eq 1 ] || fail "full disk, clip-check: exit status $rc, expected 1: $out"
printf '%s' "$out" | grep -q 'clip.st: write failed: File too large' || fail "full disk, clip-check: no clear error: $out"
cmp -s "$TMP/clip.st" "$TMP/clip.saved" || fail "full disk, clip-check: the earlier output changed"
no_temps "$TMP" "full disk, clip-check"
# train without checkpoints into the earlier run's folder: metrics.jsonl fits, the model does not;
# the earlier model stays (a run that started replaces metrics.jsonl, nothing else)
cp -a "$TMP/run" "$TMP/disk"
kb=$(( $(wc -c < "$M") / 1024 - 4 ))
out=$( (ulimit -f $kb; exec "$BIN" train "${D[@]}" "${A[@]}" --epochs 1 --no-checkpoints --out "$TMP/disk") 2>&1 )
rc=$?
[ $rc -eq 1 ] || fail "full disk, train: exit status $rc, expected 1: $out"
printf '%s' "$out" | grep -q 'disk/model.safetensors: write failed: File too large' || fail "full disk, train: no clear error: $out"
cmp -s "$TMP/disk/model.safetensors" "$M" || fail "full disk, train: the earlier model changed"
[ "$(ls "$TMP/disk/checkpoints")" = "$(ls "$TMP/run/checkpoints")" ] || fail "full disk, train: the checkpoints changed"
no_temps "$TMP/disk" "full disk, train"
# train with checkpoints: the first checkpoint does not fit; the message names it and how to go on
rm -rf "$TMP/disk2"
out=$( (ulimit -f 64; exec "$BIN" train "${D[@]}" "${A[@]}" --epochs 1 --out "$TMP/disk2") 2>&1 )
rc=$?
[ $rc -eq 1 ] || fail "full disk, checkpoint: exit status $rc, expected 1: $out"
printf '%s' "$out" | grep -q 'disk2/checkpoints/ckpt-[0-9]*.safetensors: write failed: File too large' ||
    fail "full disk, checkpoint: no clear error: $out"
no_temps "$TMP/disk2" "full disk, checkpoint"
intact "full disk"

# ---- read-only output folders ----
RO=()
if [ "$(id -u)" -eq 0 ]; then
    # root writes anywhere; without CAP_DAC_OVERRIDE it is held to the permissions like anyone
    if command -v setpriv > /dev/null && setpriv --bounding-set=-dac_override,-dac_read_search true 2> /dev/null; then
        RO=(setpriv --bounding-set=-dac_override,-dac_read_search)
    else
        RO=(skip)
    fi
fi
if [ "${RO[0]:-}" = skip ]; then
    echo "cli_faults: root without setpriv: the read-only folder cases are skipped"
else
    chmod a-w "$TMP/run" "$TMP/run/checkpoints"
    expect_e 1 "run/metrics.jsonl: cannot create a temporary file in .*run: Permission denied" -- \
        "${RO[@]}" "$BIN" train "${D[@]}" "${A[@]}" --epochs 1 --out "$TMP/run"
    # the checkpoints alone read-only: refused before anything is replaced
    chmod u+w "$TMP/run"
    expect_e 1 "run/checkpoints/ckpt-[0-9]*.safetensors: cannot remove .*Permission denied" -- \
        "${RO[@]}" "$BIN" train "${D[@]}" "${A[@]}" --epochs 1 --out "$TMP/run"
    chmod a-w "$TMP/run"
    expect_e 1 "run/clip.st: cannot create a temporary file in .*run: Permission denied" -- \
        "${RO[@]}" "$BIN" clip-check --model "$M" --batch "$TMP/batch.txt" --out "$TMP/run/clip.st"
    chmod u+w "$TMP/run" "$TMP/run/checkpoints"
    no_temps "$TMP/run" "read-only folder"
    intact "read-only folder"
fi

# ---- an output that is one of the inputs ----
expect 2 "--out .*model.safetensors is the input --model" -- "$BIN" clip-check --model "$M" --batch "$TMP/batch.txt" --out "$M"
expect 2 "is the input --model" -- "$BIN" clip-check --model "$M" --batch "$TMP/batch.txt" --out "$TMP/run/../run/./model.safetensors"
ln "$M" "$TMP/hard.safetensors"
expect 2 "is the input --model" -- "$BIN" clip-check --model "$TMP/hard.safetensors" --batch "$TMP/batch.txt" --out "$M"
rm -f "$TMP/hard.safetensors"
expect 2 "is the input --batch" -- "$BIN" clip-check --model "$M" --batch "$TMP/batch.txt" --out "$TMP/batch.txt"
intact "clip-check --out = an input"
# train: the data file is where a run would write its metrics
mkdir "$TMP/same" && cp "$TMP/data.txt" "$TMP/same/metrics.jsonl"
expect 2 "metrics.jsonl: the output would overwrite the input --data" -- \
    "$BIN" train "${A[@]}" --data "$TMP/same/metrics.jsonl" --epochs 1 --out "$TMP/same/."
cmp -s "$TMP/same/metrics.jsonl" "$TMP/data.txt" || fail "train --data OUT/metrics.jsonl: the data file changed"
expect 2 "is the input file" -- "$BIN" train "${D[@]}" "${A[@]}" --epochs 1 --out "$TMP/data.txt"
cp "$TMP/text.tsv" "$TMP/same/model.safetensors"
expect 2 "same/model.safetensors: the output would overwrite the input --dev" -- "$BIN" train-text \
    --train "$TMP/text.tsv" --dev "$TMP/same/model.safetensors" --epochs 1 --no-progress --out "$TMP/same"
cmp -s "$TMP/same/model.safetensors" "$TMP/text.tsv" || fail "train-text --dev OUT/model.safetensors: the file changed"

# ---- a fresh run that fails before it starts touches nothing of the earlier run ----
# (refused while the frequencies are read at the start of the run, or earlier with the flags: either way
# not one of the earlier run's files may change)
out=$("$BIN" train "${D[@]}" "${A[@]}" --epochs 1 --out "$TMP/run" --dp --noise-multiplier 1 \
      --reattention --item-freq "public:$TMP/nothere.txt" 2>&1)
rc=$?
[ $rc -ne 0 ] || fail "a fresh run with a missing --item-freq file exited 0: $out"
printf '%s' "$out" | grep -q "nothere.txt" || fail "a fresh run with a missing --item-freq file: the file is not named: $out"
intact "a fresh run that cannot start"

cli_finish

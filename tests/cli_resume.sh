#!/usr/bin/env bash
# Checkpoints and `dpformer train --resume` from the command line: a run killed with SIGKILL at a
# random step and resumed ends with a byte-identical model file, the same epsilon and the same
# metrics.jsonl epochs as an uninterrupted run (seeded DP-SGD and non-private); SIGINT and SIGTERM
# stop at a step boundary with exit status 130 / 143 and say how to resume; a corrupted newest
# checkpoint is named, moved aside, and the previous one used; a full disk (RLIMIT_FSIZE through
# `ulimit -f`, SIGXFSZ ignored) fails the run with a clear error and leaves the last checkpoint
# intact and resumable; a resume with another noise multiplier appends to the privacy history; a copied
# run folder resumes into the copy (never into the original), --out elsewhere is honoured, and moved
# checkpoints of a separate --checkpoint-dir need --out; settings that cannot change are refused with
# exit status 2; `dpformer eval` on a checkpoint file evaluates its parameters at that step (or, with
# --best, those of its best validated epoch).
# Usage: bash tests/cli_resume.sh /path/to/dpformer
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_resume "$@"
cd "$TMP" || exit 1

# 300 users with 8..27 items each over 120 items
awk 'BEGIN { s = 11
    for (u = 1; u <= 300; u++) { n = 8 + (u * 7) % 20
        for (k = 0; k < n; k++) { s = (s * 1103515245 + 12345) % 2147483648; print u, 1 + (u + k * k + int(s / 65536)) % 120 } } }' \
    > "$TMP/data.txt"
NP=(--data "$TMP/data.txt" --max-len 16 --d-model 32 --batch-size 16 --no-progress --threads 1 --seed 7)
DP=("${NP[@]}" --dp --noise-multiplier 1.1 --seeded-noise)

# newest_step DIR: the step of the newest checkpoint in DIR (empty if none)
newest_step() {
    ls "$1" 2>/dev/null | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.safetensors$/\1/p' | sort -n | tail -1
}
# field FILE KEY: the values of "KEY" on the epoch lines of a metrics.jsonl, space-separated
field() { grep -v '"final"' "$1" | grep -o "\"$2\":[^,}]*" | cut -d: -f2 | tr '\n' ' '; }
final_eps() { grep '"final":true' "$1" | grep -o '"epsilon":[0-9.e+-]*' | cut -d: -f2; }

# same_run REF DIR WHAT: DIR's model file, final epsilon and epoch lines equal REF's
same_run() {
    cmp -s "$1/model.safetensors" "$2/model.safetensors" || fail "$3: model.safetensors differs from the uninterrupted run"
    [ "$(final_eps "$1/metrics.jsonl")" = "$(final_eps "$2/metrics.jsonl")" ] \
        || fail "$3: final epsilon $(final_eps "$2/metrics.jsonl") differs from $(final_eps "$1/metrics.jsonl")"
    for k in epoch step train_loss valid_ndcg10 epsilon; do
        [ "$(field "$1/metrics.jsonl" $k)" = "$(field "$2/metrics.jsonl" $k)" ] \
            || fail "$3: metrics.jsonl $k differs: '$(field "$2/metrics.jsonl" $k)' vs '$(field "$1/metrics.jsonl" $k)'"
    done
    [ "$(grep -c '"final":true' "$2/metrics.jsonl")" -eq 1 ] || fail "$3: metrics.jsonl has not exactly one final line"
}

# ---- the uninterrupted runs ----
"$BIN" train "${DP[@]}" --epochs 3 --out "$TMP/ref_dp" > /dev/null 2>&1 || fail "reference DP run failed"
"$BIN" train "${NP[@]}" --epochs 3 --out "$TMP/ref_np" > /dev/null 2>&1 || fail "reference non-private run failed"
[ "$(field "$TMP/ref_dp/metrics.jsonl" epoch)" = "1 2 3 " ] || fail "reference metrics: $(cat "$TMP/ref_dp/metrics.jsonl")"
[ -s "$TMP/ref_dp/checkpoints/$(ls "$TMP/ref_dp/checkpoints" | tail -1)" ] || fail "no checkpoint written by default"
total_dp=$(field "$TMP/ref_dp/metrics.jsonl" step | awk '{ print $NF }')
total_np=$(field "$TMP/ref_np/metrics.jsonl" step | awk '{ print $NF }')

# ---- SIGKILL at a random step, then --resume ----
# kill_and_resume NAME TOTAL ARGS...: train with a checkpoint every step; once a checkpoint of a
# random step >= 2 exists, SIGKILL (wherever the run is: inside a step, inside a write); resume.
kill_and_resume() {
    local name=$1 total=$2 tries=0 rc=0 target s pid
    shift 2
    # the target lies in the first half of the run, and a run that finishes before the poll sees its
    # checkpoint (a fast machine, a busy one) is tried again
    while [ $tries -lt 6 ]; do
        tries=$((tries + 1))
        rm -rf "$TMP/$name"
        target=$((2 + RANDOM % (total / 2 > 1 ? total / 2 - 1 : 1)))
        "$BIN" train "$@" --epochs 3 --checkpoint-every 1 --out "$TMP/$name" > "$TMP/$name.log" 2>&1 &
        pid=$!
        while kill -0 $pid 2>/dev/null; do
            s=$(newest_step "$TMP/$name/checkpoints")
            if [ -n "$s" ] && [ "$s" -ge "$target" ]; then
                kill -9 $pid 2>/dev/null
                break
            fi
            sleep 0.01
        done
        { wait $pid; } 2>/dev/null
        rc=$?
        [ $rc -eq 137 ] && break
        echo "$name: the run ended (status $rc) before the kill at step $target; again"
    done
    [ $rc -eq 137 ] || { fail "$name: could not kill the run (status $rc): $(cat "$TMP/$name.log")"; return; }
    [ -e "$TMP/$name/model.safetensors" ] && fail "$name: a killed run left a model file"
    echo "$name: SIGKILL once step $target was checkpointed (newest checkpoint: step $(newest_step "$TMP/$name/checkpoints") of $total)"
    out=$("$BIN" train --resume "$TMP/$name" 2>&1)
    rc=$?
    [ $rc -eq 0 ] || { fail "$name: resume exited $rc: $out"; return; }
    printf '%s' "$out" | grep -q 'resuming from .*ckpt-' || fail "$name: resume does not say where it resumes: $out"
}
kill_and_resume kill_dp "$total_dp" "${DP[@]}"
same_run "$TMP/ref_dp" "$TMP/kill_dp" "SIGKILL + resume (DP-SGD, seeded)"
cmp -s "$TMP/ref_dp/privacy.json" "$TMP/kill_dp/privacy.json" || fail "SIGKILL + resume: privacy.json differs"
kill_and_resume kill_np "$total_np" "${NP[@]}"
same_run "$TMP/ref_np" "$TMP/kill_np" "SIGKILL + resume (non-private)"

# ---- SIGINT / SIGTERM: stop at a step boundary, checkpoint, distinct exit status, how to resume ----
# stop_and_resume NAME SIGNAL STATUS: checkpoints only every 4 steps, so the stop writes its own
stop_and_resume() {
    local name=$1 sig=$2 want=$3 tries=0 target s pid rc=0
    while [ $tries -lt 6 ]; do
        tries=$((tries + 1))
        rm -rf "$TMP/$name"
        target=$((3 + RANDOM % 20))
        "$BIN" train "${DP[@]}" --epochs 3 --checkpoint-every 4 --out "$TMP/$name" > "$TMP/$name.log" 2>&1 &
        pid=$!
        while kill -0 $pid 2>/dev/null; do
            s=$(newest_step "$TMP/$name/checkpoints")
            if [ -n "$s" ] && [ "$s" -ge "$target" ]; then
                kill -"$sig" $pid 2>/dev/null
                break
            fi
            sleep 0.01
        done
        { wait $pid; } 2>/dev/null
        rc=$?
        [ $rc -ne 0 ] && break
        echo "$name: the run ended before SIG$sig at step $target; again"
    done
    [ $rc -eq "$want" ] || { fail "$name: SIG$sig gave exit status $rc, expected $want: $(cat "$TMP/$name.log")"; return; }
    grep -q "SIG$sig: stopped after step [0-9]* (epoch [0-9]*, [0-9]* steps into it); checkpoint .*ckpt-" "$TMP/$name.log" \
        || fail "$name: no stop message: $(cat "$TMP/$name.log")"
    grep -q "resume with: dpformer train --resume .*$name/checkpoints" "$TMP/$name.log" \
        || fail "$name: does not say how to resume: $(cat "$TMP/$name.log")"
    stopped=$(sed -n 's/.*stopped after step \([0-9]*\).*/\1/p' "$TMP/$name.log")
    [ "$(newest_step "$TMP/$name/checkpoints")" = "$stopped" ] || fail "$name: no checkpoint of step $stopped"
    [ -e "$TMP/$name/model.safetensors" ] && fail "$name: a stopped run wrote a model file"
    echo "$name: SIG$sig after step $stopped, exit status $rc"
    "$BIN" train --resume "$TMP/$name" > "$TMP/$name.log" 2>&1 || fail "$name: resume failed: $(cat "$TMP/$name.log")"
    same_run "$TMP/ref_dp" "$TMP/$name" "SIG$sig + resume"
}
stop_and_resume int INT 130
stop_and_resume term TERM 143

# ---- a corrupted newest checkpoint: named, moved aside, the previous one used ----
ck="$TMP/int/checkpoints"
n=$(ls "$ck" | grep -c '^ckpt-.*\.safetensors$')
[ "$n" -eq 2 ] || fail "keep-checkpoints 2: $n checkpoint files in $ck: $(ls "$ck")"
newest="$ck/$(ls "$ck" | grep '^ckpt-.*\.safetensors$' | tail -1)"
size=$(wc -c < "$newest")
printf '\x5a' | dd of="$newest" bs=1 seek=$((size - 300)) count=1 conv=notrunc 2>/dev/null
out=$("$BIN" train --resume "$TMP/int" 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "resume past a corrupted checkpoint exited $rc: $out"
printf '%s' "$out" | grep -q "warning: skipping invalid checkpoint $newest (.*checksum mismatch" \
    || fail "the corrupted checkpoint is not named with its problem: $out"
[ -f "$newest.invalid" ] || fail "the corrupted checkpoint was not moved aside"
same_run "$TMP/ref_dp" "$TMP/int" "resume past a corrupted checkpoint"
# a truncated checkpoint as the only one: refused, naming the file
mkdir -p "$TMP/trunc"
cp "$ck/$(ls "$ck" | grep '^ckpt-.*\.safetensors$' | tail -1)" "$TMP/trunc/ckpt-000000000001.safetensors"
truncate -s 5000 "$TMP/trunc/ckpt-000000000001.safetensors"
expect 2 'trunc/ckpt-000000000001.safetensors.*truncated' -- "$BIN" train --resume "$TMP/trunc"

# ---- a full disk: the checkpoint write fails for real, the last good checkpoint stays ----
"$BIN" train "${DP[@]}" --epochs 1 --out "$TMP/disk" > /dev/null 2>&1 || fail "one-epoch run failed"
ck="$TMP/disk/checkpoints"
before=$(ls "$ck")
cp "$ck/$before" "$TMP/saved.safetensors"
out=$( (trap '' XFSZ; ulimit -f 16; exec "$BIN" train --resume "$TMP/disk" --epochs 3) 2>&1 )
rc=$?
[ $rc -eq 1 ] || fail "full disk: exit status $rc, expected 1: $out"
printf '%s' "$out" | grep -q 'ckpt-.*write failed: File too large; the previous checkpoint .* is intact' \
    || fail "full disk: no clear error: $out"
printf '%s' "$out" | grep -q 'dpformer train --resume' || fail "full disk: does not say how to resume: $out"
[ "$(ls "$ck")" = "$before" ] || fail "full disk: the checkpoint folder changed: $(ls -a "$ck")"
[ "$(ls -a "$ck" | grep -c tmp)" -eq 0 ] || fail "full disk: a temporary file was left: $(ls -a "$ck")"
cmp -s "$ck/$before" "$TMP/saved.safetensors" || fail "full disk: the last good checkpoint changed"
"$BIN" train --resume "$TMP/disk" --epochs 3 > /dev/null 2>&1 || fail "resume after the full disk failed"
same_run "$TMP/ref_dp" "$TMP/disk" "one epoch, a full disk, then resumed to three"

# ---- another noise multiplier on resume: appended to the history; epsilon grows accordingly ----
"$BIN" train "${DP[@]}" --epochs 1 --out "$TMP/sigma" > /dev/null 2>&1 || fail "one-epoch run failed"
eps1=$(final_eps "$TMP/sigma/metrics.jsonl")
out=$("$BIN" train --resume "$TMP/sigma" --epochs 2 --noise-multiplier 2.2 2>&1)
[ $? -eq 0 ] || fail "resume with --noise-multiplier 2.2 failed: $out"
eps2=$(final_eps "$TMP/sigma/metrics.jsonl")
eps_ref2=$(grep '"epoch":2,' "$TMP/ref_dp/metrics.jsonl" | grep -o '"epsilon":[0-9.]*' | cut -d: -f2)
[ "$(grep -c '"type"' "$TMP/sigma/privacy.json")" -eq 2 ] || fail "privacy.json does not hold two events: $(cat "$TMP/sigma/privacy.json")"
grep -q '"noise_multiplier":[[:space:]]*2.2' "$TMP/sigma/privacy.json" || fail "privacy.json lacks sigma 2.2"
eps_acc=$("$BIN" privacy --history "$TMP/sigma/privacy.json" --delta 1e-6 --json 2>/dev/null \
          | sed -n 's/.*"epsilon":[[:space:]]*\([0-9.e+-]*\).*/\1/p' | head -1)
awk -v a="$eps1" -v b="$eps2" -v r="$eps_ref2" -v h="$eps_acc" \
    'BEGIN { exit !(a > 0 && b > a && b < r && (b - h < 1e-5 && h - b < 1e-5)) }' \
    || fail "epsilon after sigma 1.1 then 2.2: $eps1 -> $eps2 (two epochs at 1.1: $eps_ref2; accountant on privacy.json: $eps_acc)"
[ "$(field "$TMP/sigma/metrics.jsonl" epoch)" = "1 2 " ] || fail "resumed metrics.jsonl epochs: $(field "$TMP/sigma/metrics.jsonl" epoch)"
echo "noise multiplier 1.1 then 2.2: epsilon $eps1 -> $eps2 (two epochs at 1.1: $eps_ref2)"

# ---- a copied run folder resumes into the copy: its outputs go where the checkpoints are ----
snap() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r md5sum) 2>/dev/null; }
"$BIN" train "${DP[@]}" --epochs 1 --out "$TMP/orig" > /dev/null 2>&1 || fail "one-epoch run failed"
orig=$(snap "$TMP/orig")
cp -a "$TMP/orig" "$TMP/copy1"
cp -a "$TMP/orig" "$TMP/copy2"
cp -a "$TMP/orig" "$TMP/copy3"
"$BIN" train --resume "$TMP/copy1" --epochs 2 > "$TMP/copy.log" 2>&1 || fail "resume of a copy failed: $(cat "$TMP/copy.log")"
"$BIN" train --resume "$TMP/copy2/checkpoints" --epochs 2 > "$TMP/copy.log" 2>&1 ||
    fail "resume of a copy's checkpoint folder failed: $(cat "$TMP/copy.log")"
"$BIN" train --resume "$TMP/copy3" --epochs 2 --out "$TMP/elsewhere" > "$TMP/copy.log" 2>&1 ||
    fail "resume of a copy with --out failed: $(cat "$TMP/copy.log")"
[ "$(snap "$TMP/orig")" = "$orig" ] || fail "resuming copies of a run folder changed the original: $(ls -la "$TMP/orig")"
for d in copy1 copy2 elsewhere; do
    [ "$(field "$TMP/$d/metrics.jsonl" epoch)" = "1 2 " ] || fail "resumed copy: $d/metrics.jsonl epochs '$(field "$TMP/$d/metrics.jsonl" epoch)'"
    cmp -s "$TMP/$d/model.safetensors" "$TMP/orig/model.safetensors" && fail "resumed copy: $d/model.safetensors is the one-epoch model"
done
cmp -s "$TMP/copy1/model.safetensors" "$TMP/copy2/model.safetensors" || fail "resumed copies: the two models differ"
cmp -s "$TMP/copy3/model.safetensors" "$TMP/orig/model.safetensors" || fail "resume with --out elsewhere changed the copy's model"
[ -n "$(ls "$TMP/copy3/checkpoints" | grep -v "$(ls "$TMP/orig/checkpoints")")" ] ||
    fail "resume with --out elsewhere: no new checkpoint in the folder resumed from"
# checkpoints in a folder of their own (--checkpoint-dir) that were moved: where the outputs go must be said
"$BIN" train "${DP[@]}" --epochs 1 --out "$TMP/own-out" --checkpoint-dir "$TMP/own-ck" > /dev/null 2>&1 || fail "run with --checkpoint-dir failed"
"$BIN" train --resume "$TMP/own-ck" --epochs 2 > "$TMP/copy.log" 2>&1 || fail "resume of --checkpoint-dir failed: $(cat "$TMP/copy.log")"
[ "$(field "$TMP/own-out/metrics.jsonl" epoch)" = "1 2 " ] || fail "resume of --checkpoint-dir: outputs not in the run's --out"
mv "$TMP/own-ck" "$TMP/own-ck2"
expect 2 'own-ck2 are no longer where their run wrote them.*give --out' -- "$BIN" train --resume "$TMP/own-ck2" --epochs 3
expect 0 'saved .*own-out2/model.safetensors' -- "$BIN" train --resume "$TMP/own-ck2" --epochs 3 --out "$TMP/own-out2"

# ---- what cannot change, and other refusals ----
expect 2 'cannot resume with d-model 64.*model shape' -- "$BIN" train --resume "$TMP/sigma" --d-model 64
expect 2 'cannot resume with batch-size 32' -- "$BIN" train --resume "$TMP/sigma" --batch-size 32
expect 2 'cannot resume with seed 8' -- "$BIN" train --resume "$TMP/sigma" --seed 8
head -n 2000 "$TMP/data.txt" > "$TMP/less.txt"
expect 2 'written for another dataset' -- "$BIN" train --resume "$TMP/sigma" --data "$TMP/less.txt"
expect 2 'nothing-here: does not exist' -- "$BIN" train --resume "$TMP/nothing-here"
mkdir -p "$TMP/empty-dir"
expect 2 'no checkpoint files' -- "$BIN" train --resume "$TMP/empty-dir"
# a fresh run never overwrites the checkpoints of a run that did not finish
older=$(ls "$TMP/ref_dp/checkpoints" | head -1) # the epoch before the last: not the end of the run
rm -f "$TMP/kill_dp/checkpoints/"*
cp "$TMP/ref_dp/checkpoints/$older" "$TMP/kill_dp/checkpoints/"
expect 2 'did not finish.*--resume' -- "$BIN" train "${DP[@]}" --epochs 3 --out "$TMP/kill_dp"
expect 2 'another run that did not finish' -- "$BIN" train --resume "$TMP/sigma" --epochs 3 \
    --checkpoint-dir "$TMP/kill_dp/checkpoints"

# `dpformer eval` on a checkpoint file: its parameters at that step are the last epoch's (= the model
# of a seeded DP-SGD run that keeps the last, as DP-SGD does by default), --best its best validated
# epoch's (= the --select-best run's own model)
"$BIN" train "${DP[@]}" --epochs 4 --select-best --keep-checkpoints 1 --out "$TMP/ev_best" > "$TMP/ev_best.log" 2>&1 ||
    fail "eval on a checkpoint: training failed: $(tail -3 "$TMP/ev_best.log")"
"$BIN" train "${DP[@]}" --epochs 4 --no-checkpoints --out "$TMP/ev_last" > "$TMP/ev_last.log" 2>&1 ||
    fail "eval on a checkpoint: training that keeps the last epoch failed: $(tail -3 "$TMP/ev_last.log")"
ck="$TMP/ev_best/checkpoints/$(ls "$TMP/ev_best/checkpoints" | tail -1)"
metrics_of() { "$BIN" eval --data "$TMP/data.txt" --threads 1 --split "$@" --json | sed 's/,"parameters":.*//'; }
for split in valid test; do
    a=$(metrics_of $split --model "$ck") b=$(metrics_of $split --model "$TMP/ev_last/model.safetensors")
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "eval on a checkpoint ($split): '$a', the last epoch's model: '$b'"
    a=$(metrics_of $split --model "$ck" --best) b=$(metrics_of $split --model "$TMP/ev_best/model.safetensors")
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "eval on a checkpoint --best ($split): '$a', the run's model: '$b'"
done
best=$(grep -o '"best_epoch":[0-9]*' "$TMP/ev_best/metrics.jsonl" | cut -d: -f2)
[ "$best" != 4 ] || [ "$(metrics_of valid --model "$ck")" = "$(metrics_of valid --model "$ck" --best)" ] ||
    fail "eval on a checkpoint: the best epoch is the last, yet --best differs"
expect 0 'checkpoint of step [0-9]* (4 epoch(s) completed): the parameters at that step' -- \
    "$BIN" eval --model "$ck" --data "$TMP/data.txt" --threads 1
expect 2 'needs a checkpoint file' -- "$BIN" eval --model "$TMP/ev_last/model.safetensors" --data "$TMP/data.txt" --best

cli_finish

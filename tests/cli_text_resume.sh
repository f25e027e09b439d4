#!/usr/bin/env bash
# `dpformer train-text` on the training loop every task shares: a run killed with SIGKILL at a random
# step and resumed, and one stopped by SIGTERM or SIGINT (exit status 143 / 130, a checkpoint, how to
# resume), end with a byte-identical model file, the same privacy.json and the same metrics.jsonl epoch
# lines as the uninterrupted run, non-private, with DP-SGD and with DP-FP (seeded); --resume refuses
# another dataset, another model or mode, and a recommendation run's checkpoints; metrics.jsonl has
# the same keys as train's (epoch_seconds, and a final line with the test accuracy, delta, epsilon and
# what it covers); without --dev nothing prints nan or claims a selection by dev accuracy; a terminal
# gets a progress bar within each epoch, a pipe or --no-progress plain epoch lines.
# Usage: bash tests/cli_text_resume.sh /path/to/dpformer
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_text_resume "$@"
cd "$TMP" || exit 1

awk 'BEGIN { srand(5); split("good great fine love nice", P); split("bad awful poor hate dull", N);
     split("the a movie film plot was is and it", F); print "label\tsentence";
     for (i = 0; i < 560; i++) { y = int(rand() * 2); s = F[1 + int(rand() * 9)] " " F[1 + int(rand() * 9)];
       w = y ? P[1 + int(rand() * 5)] : N[1 + int(rand() * 5)]; printf "%d\t%s %s %s\n", y, s, w, F[1 + int(rand() * 9)] } }' \
    > train.tsv
head -1 train.tsv > dev.tsv; tail -80 train.tsv >> dev.tsv
head -1 train.tsv > test.tsv; sed -n 2,61p train.tsv >> test.tsv
BASE=(--train "$TMP/train.tsv" --dev "$TMP/dev.tsv" --test "$TMP/test.tsv" --tokenizer words:256 --max-len 12 --d-model 16
      --n-heads 2 --n-layers 1 --dropout 0.1 --batch-size 16 --lr 3e-3 --seed 7 --threads 1)
NP=("${BASE[@]}" --no-progress)
DP=("${BASE[@]}" --no-progress --dp --noise-multiplier 1 --seeded-noise --max-physical-batch 8)
FP=("${BASE[@]}" --no-progress --dpfp --noise-multiplier 1 --micro-batches 2 --seeded-noise --max-physical-batch 8)

newest_step() { ls "$1" 2>/dev/null | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.safetensors$/\1/p' | sort -n | tail -1; }
field() { grep -v '"final"' "$1" | grep -o "\"$2\":[^,}]*" | cut -d: -f2 | tr '\n' ' '; }
final() { grep '"final":true' "$1"; }

# same_run REF DIR WHAT: the model file, privacy.json, the epoch lines and the final line's metrics equal
same_run() {
    cmp -s "$1/model.safetensors" "$2/model.safetensors" || fail "$3: model.safetensors differs from the uninterrupted run"
    if [ -e "$1/privacy.json" ]; then
        cmp -s "$1/privacy.json" "$2/privacy.json" || fail "$3: privacy.json differs from the uninterrupted run"
    fi
    for k in epoch step train_loss dev_accuracy epsilon examples; do
        [ "$(field "$1/metrics.jsonl" $k)" = "$(field "$2/metrics.jsonl" $k)" ] \
            || fail "$3: metrics.jsonl $k differs: '$(field "$2/metrics.jsonl" $k)' vs '$(field "$1/metrics.jsonl" $k)'"
    done
    [ "$(final "$1/metrics.jsonl" | sed 's/,"seconds_per_epoch":[0-9.]*//')" = \
      "$(final "$2/metrics.jsonl" | sed 's/,"seconds_per_epoch":[0-9.]*//; s/,"resumes":[0-9]*//')" ] \
        || fail "$3: final metrics line differs: $(final "$2/metrics.jsonl") vs $(final "$1/metrics.jsonl")"
}

# ---- the uninterrupted runs, and what their metrics.jsonl holds ----
for m in NP DP FP; do
    eval "args=(\"\${$m[@]}\")"
    "$BIN" train-text "${args[@]}" --epochs 3 --out "$TMP/ref_$m" > "$TMP/ref_$m.log" 2>&1 || fail "reference $m run failed: $(cat "$TMP/ref_$m.log")"
    [ "$(field "$TMP/ref_$m/metrics.jsonl" epoch)" = "1 2 3 " ] || fail "$m metrics epochs: $(cat "$TMP/ref_$m/metrics.jsonl")"
    grep -v '"final"' "$TMP/ref_$m/metrics.jsonl" | grep -vq '"epoch_seconds":[0-9.]*,"elapsed_seconds"' &&
        fail "$m: an epoch line lacks epoch_seconds: $(cat "$TMP/ref_$m/metrics.jsonl")"
    grep -q '"seconds":' "$TMP/ref_$m/metrics.jsonl" && fail "$m: metrics.jsonl still has \"seconds\""
    final "$TMP/ref_$m/metrics.jsonl" | grep -q '"dev_accuracy":[0-9.]*,"test_accuracy":[0-9.]*' ||
        fail "$m: no test accuracy in the final line: $(final "$TMP/ref_$m/metrics.jsonl")"
    [ -n "$(ls "$TMP/ref_$m/checkpoints")" ] || fail "$m: no checkpoint written by default"
done
final "$TMP/ref_DP/metrics.jsonl" | grep -q '"epsilon":[0-9.]*,"delta":1e-06,.*"epsilon_covers":"the trained weights' ||
    fail "DP-SGD final line: $(final "$TMP/ref_DP/metrics.jsonl")"
final "$TMP/ref_FP/metrics.jsonl" | grep -q '"epsilon":[0-9.]*,"delta":1e-06,.*"mechanism_events":[0-9]*,"epsilon_covers":"the noised pooled representations.*NOT the trained weights' ||
    fail "DP-FP final line: $(final "$TMP/ref_FP/metrics.jsonl")"
grep -q '"mechanism_events"' "$TMP/ref_FP/metrics.jsonl" || fail "DP-FP epoch lines lack mechanism_events"
grep -q 'kept epoch 3 (the last)' "$TMP/ref_DP.log" || fail "DP-SGD summary: $(cat "$TMP/ref_DP.log")"
total=$(field "$TMP/ref_NP/metrics.jsonl" step | awk '{ print $NF }')

# ---- SIGKILL at a random step, then --resume ----
kill_and_resume() {
    local name=$1 tries=0 rc=0 target s pid
    shift
    while [ $tries -lt 3 ]; do
        tries=$((tries + 1))
        rm -rf "$TMP/$name"
        target=$((2 + RANDOM % (total / 2))) # in the first half: the run must not end before the kill
        "$BIN" train-text "$@" --epochs 3 --checkpoint-every 1 --out "$TMP/$name" > "$TMP/$name.log" 2>&1 &
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
    out=$("$BIN" train-text --resume "$TMP/$name" 2>&1)
    rc=$?
    [ $rc -eq 0 ] || { fail "$name: resume exited $rc: $out"; return; }
    printf '%s' "$out" | grep -q 'resuming from .*ckpt-' || fail "$name: resume does not say where it resumes: $out"
}
kill_and_resume kill_np "${NP[@]}"
same_run "$TMP/ref_NP" "$TMP/kill_np" "SIGKILL + resume (non-private)"
kill_and_resume kill_dp "${DP[@]}"
same_run "$TMP/ref_DP" "$TMP/kill_dp" "SIGKILL + resume (DP-SGD, seeded)"
kill_and_resume kill_fp "${FP[@]}"
same_run "$TMP/ref_FP" "$TMP/kill_fp" "SIGKILL + resume (DP-FP, seeded)"

# ---- SIGTERM / SIGINT: a checkpoint at the step boundary, exit status 143 / 130, how to resume ----
# (checkpoints only every 4 steps, so that the stop writes its own)
stop_and_resume() {
    local name=$1 sig=$2 want=$3 ref=$4 tries=0 target s pid rc=0
    shift 4
    while [ $tries -lt 3 ]; do
        tries=$((tries + 1))
        rm -rf "$TMP/$name"
        target=$((3 + RANDOM % (total / 2)))
        "$BIN" train-text "$@" --epochs 3 --checkpoint-every 4 --out "$TMP/$name" > "$TMP/$name.log" 2>&1 &
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
    grep -q "resume with: dpformer train-text --resume .*$name/checkpoints" "$TMP/$name.log" \
        || fail "$name: does not say how to resume: $(cat "$TMP/$name.log")"
    stopped=$(sed -n 's/.*stopped after step \([0-9]*\).*/\1/p' "$TMP/$name.log")
    [ "$(newest_step "$TMP/$name/checkpoints")" = "$stopped" ] || fail "$name: no checkpoint of step $stopped"
    [ -e "$TMP/$name/model.safetensors" ] && fail "$name: a stopped run wrote a model file"
    echo "$name: SIG$sig after step $stopped, exit status $rc"
    "$BIN" train-text --resume "$TMP/$name" > "$TMP/$name.log" 2>&1 || fail "$name: resume failed: $(cat "$TMP/$name.log")"
    same_run "$TMP/$ref" "$TMP/$name" "SIG$sig + resume ($name)"
}
stop_and_resume term_dp TERM 143 ref_DP "${DP[@]}"
stop_and_resume int_fp INT 130 ref_FP "${FP[@]}"

# ---- what --resume refuses ----
head -n 300 train.tsv > less.tsv
expect 2 'written for another dataset: train set' -- "$BIN" train-text --resume "$TMP/ref_DP" --epochs 4 --train "$TMP/less.tsv"
expect 2 'written for another dataset: dev set' -- "$BIN" train-text --resume "$TMP/ref_DP" --epochs 4 --dev "$TMP/test.tsv"
expect 2 'cannot resume with d-model 32.*model shape' -- "$BIN" train-text --resume "$TMP/ref_DP" --d-model 32
expect 2 'cannot resume with mode DP-FP: the checkpoint has DP-SGD' -- "$BIN" train-text --resume "$TMP/ref_DP" --dpfp
expect 2 'cannot resume with seed 8' -- "$BIN" train-text --resume "$TMP/ref_NP" --seed 8
expect 2 'cannot resume with micro-batches 3' -- "$BIN" train-text --resume "$TMP/ref_FP" --micro-batches 3
awk 'BEGIN { for (u = 1; u <= 40; u++) for (k = 0; k < 6; k++) print u, 1 + (u * 7 + k * 13) % 30 }' > rec.txt
"$BIN" train --data "$TMP/rec.txt" --epochs 1 --max-len 4 --d-model 8 --no-progress --out "$TMP/rec" > /dev/null 2>&1 ||
    fail "train a recommender"
expect 2 'a checkpoint of a recommendation run.*dpformer train --resume' -- "$BIN" train-text --resume "$TMP/rec"
expect 2 'a checkpoint of a text-classification run.*dpformer train-text --resume' -- "$BIN" train --resume "$TMP/ref_NP"
# a fresh run does not overwrite the checkpoints of a run that did not finish
mkdir -p "$TMP/unfinished/checkpoints"
cp "$TMP/ref_DP/checkpoints/$(ls "$TMP/ref_DP/checkpoints" | head -1)" "$TMP/unfinished/checkpoints/"
expect 2 'did not finish.*dpformer train-text --resume' -- "$BIN" train-text "${DP[@]}" --epochs 3 --out "$TMP/unfinished"
# more epochs on resume continue the finished run
expect 0 'resuming from .*after epoch 3 of 4' -- "$BIN" train-text --resume "$TMP/ref_NP" --epochs 4
[ "$(field "$TMP/ref_NP/metrics.jsonl" epoch)" = "1 2 3 4 " ] || fail "resumed to 4 epochs: $(cat "$TMP/ref_NP/metrics.jsonl")"

# ---- without --dev: the last epoch, no nan, no selection by dev accuracy ----
out=$("$BIN" train-text --train "$TMP/train.tsv" --test "$TMP/test.tsv" --tokenizer words:256 --max-len 12 --d-model 16 \
      --n-heads 2 --n-layers 1 --batch-size 16 --epochs 2 --threads 1 --no-progress --dp --noise-multiplier 1 \
      --seeded-noise --out "$TMP/nodev" 2>&1)
[ $? -eq 0 ] || fail "run without --dev failed: $out"
printf '%s' "$out" | grep -qi 'nan' && fail "a run without --dev printed nan: $out"
printf '%s' "$out" | grep -q 'by dev accuracy\|dev acc\|dev accuracy' && fail "a run without --dev claims a dev selection: $out"
printf '%s' "$out" | grep -q 'kept epoch 2 (the last; no dev set)' || fail "no-dev summary: $out"
grep -qi 'nan\|dev_accuracy' "$TMP/nodev/metrics.jsonl" && fail "no-dev metrics.jsonl: $(cat "$TMP/nodev/metrics.jsonl")"
final "$TMP/nodev/metrics.jsonl" | grep -q '"model_selection":"last epoch (no dev set)".*"test_accuracy"\|"test_accuracy".*"model_selection":"last epoch (no dev set)"' ||
    fail "no-dev final line: $(final "$TMP/nodev/metrics.jsonl")"
grep -q '"model_selection":[[:space:]]*"last epoch (no dev set)"' "$TMP/nodev/privacy.json" || fail "no-dev privacy.json selection"

# ---- progress: a bar within each epoch on a terminal; plain epoch lines on a pipe ----
printf '%s' "$out" | grep -q $'\r' && fail "--no-progress wrote carriage returns"
printf '%s' "$out" | grep -q '^epoch 1/2  loss [0-9.]*  eps [0-9.]*  [0-9.]*s  [0-9]* ex/s$' || fail "no plain epoch line: $out"
out=$("$BIN" train-text "${BASE[@]}" --epochs 1 --no-checkpoints --out "$TMP/pipe" 2>&1 >/dev/null)
printf '%s' "$out" | grep -q $'\r' && fail "a pipe got a progress bar: $out"
if command -v script >/dev/null 2>&1; then
    cmdline=$(printf '%q ' "$BIN" train-text "${BASE[@]}" --epochs 1 --no-checkpoints --out "$TMP/tty")
    script -qec "$cmdline" /dev/null > "$TMP/tty.log" 2>&1
    grep -aq $'\r  epoch 1/1 \[#*\.*\]  *[0-9]*%  loss' "$TMP/tty.log" || fail "no progress bar on a terminal: $(cat -v "$TMP/tty.log")"
else
    echo "no 'script' command: the terminal progress bar is not checked"
fi
cli_finish

#!/usr/bin/env bash
# `dpformer train-text` / `eval-text`: the three modes run and state what their epsilon covers (DP-FP:
# not the weights, not the labels); SIGTERM stops with a checkpoint and exit status 143; a saved
# classifier evaluates to the accuracy the run reported;
# malformed TSV files and bad flag combinations are refused with the file, line and field (flags of the
# other mode named); models of the other task are refused by eval and eval-text.
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_text "$@"

awk 'BEGIN { srand(3); split("good great fine love nice", P); split("bad awful poor hate dull", N);
     split("the a movie film plot was is and it", F); print "label\tsentence";
     for (i = 0; i < 1200; i++) { y = int(rand() * 2); s = F[1 + int(rand() * 9)] " " F[1 + int(rand() * 9)];
       w = y ? P[1 + int(rand() * 5)] : N[1 + int(rand() * 5)]; printf "%d\t%s %s %s\n", y, s, w, F[1 + int(rand() * 9)] } }' > "$TMP/train.tsv"
head -1 "$TMP/train.tsv" > "$TMP/dev.tsv"; tail -200 "$TMP/train.tsv" >> "$TMP/dev.tsv"
small="--max-len 24 --d-model 16 --n-heads 2 --n-layers 1 --epochs 2 --batch-size 64 --lr 3e-3 --no-progress"

expect 0 "privacy: none" -- "$BIN" train-text --train "$TMP/train.tsv" --dev "$TMP/dev.tsv" $small --out "$TMP/np"
expect 0 "DP of the trained weights for each labelled sentence" -- "$BIN" train-text --train "$TMP/train.tsv" \
    --dev "$TMP/dev.tsv" $small --dp --noise-multiplier 1 --seeded-noise --out "$TMP/dp"
expect 0 "does NOT cover the trained weights" -- "$BIN" train-text --train "$TMP/train.tsv" --dev "$TMP/dev.tsv" \
    $small --dpfp --micro-batches 2 --target-epsilon 3 --out "$TMP/fp"
head -c 8192 "$TMP/fp/model.safetensors" | grep -aq 'epsilon_covers.*NOT the trained weights' ||
    fail "DP-FP model metadata lacks the coverage statement"
grep -q '"epsilon"' "$TMP/fp/metrics.jsonl" || fail "DP-FP metrics lack epsilon"

# a saved model evaluates to the dev accuracy the run reported
out=$("$BIN" train-text --train "$TMP/train.tsv" --dev "$TMP/dev.tsv" $small --out "$TMP/np2" 2>/dev/null)
want=$(printf '%s\n' "$out" | sed -n 's/^  dev accuracy *\([0-9.]*\).*/\1/p')
expect 0 "accuracy $want" -- "$BIN" eval-text --model "$TMP/np2/model.safetensors" --data "$TMP/dev.tsv"
# hashed words: the model file records the tokenizer and eval-text encodes with it
out=$("$BIN" train-text --train "$TMP/train.tsv" --dev "$TMP/dev.tsv" $small --tokenizer words:256 \
      --out "$TMP/words" 2>/dev/null)
want=$(printf '%s\n' "$out" | sed -n 's/^  dev accuracy *\([0-9.]*\).*/\1/p')
expect 0 "accuracy $want .*tokenizer words:256" -- "$BIN" eval-text --model "$TMP/words/model.safetensors" --data "$TMP/dev.tsv"
head -c 8192 "$TMP/words/model.safetensors" | grep -aq '"tokenizer\\*":\\*"words:256' ||
    fail "model metadata lacks the tokenizer"
expect 2 "tokenizer: unknown tokenizer 'wordz'" -- "$BIN" train-text --train "$TMP/train.tsv" $small --tokenizer wordz
expect 2 "buckets must be an integer" -- "$BIN" train-text --train "$TMP/train.tsv" $small --tokenizer words:0
expect 2 "cannot open" -- "$BIN" eval-text --model "$TMP/np2/missing.safetensors" --data "$TMP/dev.tsv"
printf '1 2 3 4 5 1\n2 3 4 5 1 2\n3 1 2 3 4 5\n' > "$TMP/seq.txt"
"$BIN" train --data "$TMP/seq.txt" --format sequences --epochs 1 --max-len 4 --d-model 8 --out "$TMP/rec" --no-progress >/dev/null 2>&1 ||
    fail "train a recommender"
expect 2 "not a text classifier" -- "$BIN" eval-text --model "$TMP/rec/model.safetensors" --data "$TMP/dev.tsv"

# SIGTERM stops at the next step boundary as train does: a checkpoint of that step, exit status 128 + 15,
# how to resume, and no model file (the resume finishes the run; tests/cli_text_resume.sh)
"$BIN" train-text --train "$TMP/train.tsv" --dev "$TMP/dev.tsv" ${small/--epochs 2/--epochs 100000} --dp \
    --noise-multiplier 1 --seeded-noise --out "$TMP/stop" >/dev/null 2>"$TMP/stop.err" &
pid=$!
for _ in $(seq 1 200); do [ -s "$TMP/stop/metrics.jsonl" ] && break; sleep 0.05; done
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || fail "SIGTERM: exit status $rc, expected 143: $(cat "$TMP/stop.err")"
grep -q "SIGTERM: stopped after step [0-9]* (epoch [0-9]*, [0-9]* steps into it); checkpoint .*ckpt-" "$TMP/stop.err" ||
    fail "SIGTERM: no stop message: $(cat "$TMP/stop.err")"
grep -q "resume with: dpformer train-text --resume .*stop/checkpoints" "$TMP/stop.err" ||
    fail "SIGTERM: does not say how to resume: $(cat "$TMP/stop.err")"
[ -e "$TMP/stop/model.safetensors" ] && fail "SIGTERM: a stopped run wrote a model file"
grep -q '"epoch":1,' "$TMP/stop/metrics.jsonl" || fail "SIGTERM: the completed epochs' metrics lines are missing"
grep -q '"final"' "$TMP/stop/metrics.jsonl" && fail "SIGTERM: a stopped run wrote a final metrics line"

# bad input: file, line and field
printf 'label\tsentence\n1\tgood\n7\tbad film\n' > "$TMP/badlabel.tsv"
expect 2 "badlabel.tsv:3: label" -- "$BIN" train-text --train "$TMP/badlabel.tsv" $small
printf 'label\ttext\n1\tgood\n' > "$TMP/nocol.tsv"
expect 2 "nocol.tsv:1" -- "$BIN" train-text --train "$TMP/nocol.tsv" $small
printf 'label\tsentence\n1\tgood\n0\t   \n' > "$TMP/empty.tsv"
expect 2 "empty.tsv:3: sentence" -- "$BIN" train-text --train "$TMP/empty.tsv" $small
{ printf 'label\tsentence\n0\t'; head -c 1100000 /dev/zero | tr '\0' 'a'; printf '\n'; } > "$TMP/long.tsv"
expect 2 "long.tsv:2" -- "$BIN" train-text --train "$TMP/long.tsv" $small
printf 'label\tsentence\n1\tgood\textra\n' > "$TMP/fields.tsv"
expect 2 "fields.tsv:2" -- "$BIN" train-text --train "$TMP/fields.tsv" $small
expect 2 "missing.tsv" -- "$BIN" train-text --train "$TMP/missing.tsv" $small

# flag combinations
expect 2 "need --dp or --dpfp" -- "$BIN" train-text --train "$TMP/train.tsv" $small --target-epsilon 3
expect 2 "choose one of" -- "$BIN" train-text --train "$TMP/train.tsv" $small --dp --dpfp --target-epsilon 3
expect 2 "needs --target-epsilon or --noise-multiplier" -- "$BIN" train-text --train "$TMP/train.tsv" $small --dpfp
expect 2 "unknown pooling" -- "$BIN" train-text --train "$TMP/train.tsv" $small --pool max
# flags of another mode are refused, naming the flag and the mode it belongs to, not ignored
expect 2 "\-\-micro-batches is a DP-FP flag: DP-FP flags need --dpfp" -- "$BIN" train-text --train "$TMP/train.tsv" $small \
    --dp --noise-multiplier 1 --micro-batches 4
expect 2 "\-\-dpfp-clip is a DP-FP flag: DP-FP flags need --dpfp" -- "$BIN" train-text --train "$TMP/train.tsv" $small \
    --dp --noise-multiplier 1 --dpfp-clip 5
expect 2 "\-\-max-grad-norm is a DP-SGD flag: DP-SGD flags need --dp" -- "$BIN" train-text --train "$TMP/train.tsv" $small \
    --dpfp --noise-multiplier 1 --max-grad-norm 3
expect 2 "\-\-clip-mode is a DP-SGD flag: DP-SGD flags need --dp" -- "$BIN" train-text --train "$TMP/train.tsv" $small \
    --dpfp --noise-multiplier 1 --clip-mode ghost
expect 2 "\-\-delta is a privacy flag: privacy flags need --dp or --dpfp" -- "$BIN" train-text --train "$TMP/train.tsv" $small \
    --delta 1e-6
expect 2 "\-\-max-grad-norm is a DP-SGD flag" -- "$BIN" train-text --train "$TMP/train.tsv" $small --max-grad-norm 3
# --no-progress means what it means in train: no progress bar; the epoch lines stay
out=$("$BIN" train-text --train "$TMP/train.tsv" $small --out "$TMP/np3" 2>&1 >/dev/null)
printf '%s' "$out" | grep -q "^epoch 1/2" || fail "train-text --no-progress dropped the epoch lines: $out"

# every command checks the model's task: a classifier is not a next-item model and the reverse (a
# classifier over bytes has 258 "items": a dataset of 258 items used to abort eval)
awk 'BEGIN { for (u = 1; u <= 30; u++) { printf "%d", u; for (k = 0; k < 5; k++) printf " %d", 1 + (u * 7 + k * 13) % 258;
     printf "\n" } printf "99"; for (i = 1; i <= 258; i++) printf " %d", i; printf "\n" }' > "$TMP/items258.txt"
expect 2 "np2/model.safetensors is a text classifier.*eval-text" -- "$BIN" eval --model "$TMP/np2/model.safetensors" \
    --data "$TMP/items258.txt"
expect 2 "is a next-item model.*not a text classifier.*dpformer eval " -- "$BIN" eval-text \
    --model "$TMP/rec/model.safetensors" --data "$TMP/dev.tsv"

# loader advice names the command-line flag, not "the options"
printf 'label\ttext\n1\tgood\n' > "$TMP/textcol.tsv"
expect 2 "name it with --text-column" -- "$BIN" train-text --train "$TMP/textcol.tsv" $small
printf 'label\tsentence\n1\tcaf\351\n' > "$TMP/latin1.tsv"
expect 2 "accept raw bytes with --accept-invalid-utf8" -- "$BIN" train-text --train "$TMP/latin1.tsv" $small
out=$("$BIN" train-text --train "$TMP/textcol.tsv" $small 2>&1)
printf '%s' "$out" | grep -q "in the options" && fail "message speaks of options: $out"
# --help names the values and shows no meaningless default
out=$("$BIN" train-text --help)
printf '%s' "$out" | grep -q -- "--train FILE" || fail "train-text --help: no '--train FILE'"
printf '%s' "$out" | grep -q -- "--out DIR" || fail "train-text --help: no '--out DIR'"
printf '%s' "$out" | grep -Eq "default (-1|nan)\)" && fail "train-text --help shows an unset default: $out"
cli_finish

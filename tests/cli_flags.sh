#!/usr/bin/env bash
# Flags across the training commands: --help shows value names (FILE, DIR) and no meaningless defaults;
# flags a run would ignore are refused, naming the flag (train: DP flags without --dp, Re-Attention
# flags without --reattention; demo: --dp, the flags of a skipped run); --item-freq public:FILE errors
# are usage errors (exit 2, file:line: field; an empty file refused); eval takes --threads and a
# --batch-size larger than the dataset, and a batch too large for memory is refused naming the flag.
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_flags "$@"

# --help: value names; no "(default nan)" or "(default -1)" for unset values
for c in train demo eval train-text eval-text clip-check privacy "data stats"; do
    out=$("$BIN" $c --help) || fail "$c --help exited $?"
    printf '%s' "$out" | grep -Eq '\(default (nan|-1)\)' && fail "$c --help shows an unset default: $(printf '%s' "$out" | grep -E 'default (nan|-1)')"
done
expect 0 "\-\-resume DIR" -- "$BIN" train --help
expect 0 "\-\-data FILE" -- "$BIN" train --help
expect 0 "\-\-out DIR" -- "$BIN" demo --help
for c in eval eval-text clip-check; do expect 0 "\-\-threads N" -- "$BIN" $c --help; done
out=$("$BIN" train --help)
printf '%s' "$out" | grep -A1 -- "--target-epsilon" | grep -q "(default" && fail "train --help: --target-epsilon has a default"
# --no-progress says the same in train, demo and train-text
for c in train demo train-text; do
    expect 0 "plain epoch lines instead of a progress bar" -- "$BIN" $c --help
done
# --version: the version and the build, exit 0
expect_e 0 "^dpformer [0-9]+\.[0-9]+\.[0-9]+" -- "$BIN" --version
expect 0 "cuda: " -- "$BIN" --version

awk 'BEGIN { for (u = 1; u <= 40; u++) { printf "%d", u; for (k = 0; k < 6; k++) printf " %d", 1 + (u * 7 + k * 3) % 30;
     printf "\n" } }' > "$TMP/seq.txt"
small="--data $TMP/seq.txt --format sequences --max-len 6 --d-model 8 --epochs 1 --batch-size 16 --no-progress --no-checkpoints"

# train: DP and Re-Attention flags that would be ignored are refused, naming the flag
expect 2 "\-\-max-grad-norm is a DP-SGD flag: DP flags need --dp" -- "$BIN" train $small --max-grad-norm 3 --out "$TMP/x"
expect 2 "\-\-clip-mode is a DP-SGD flag" -- "$BIN" train $small --clip-mode ghost --out "$TMP/x"
expect 2 "\-\-item-freq-cap is a Re-Attention flag: it needs --reattention" -- "$BIN" train $small --dp \
    --noise-multiplier 1 --item-freq-cap 3 --out "$TMP/x"
printf '1 0.5\n' > "$TMP/freq.txt"
expect 2 "\-\-item-freq-noise sets the private release" -- "$BIN" train $small --dp --noise-multiplier 1 --reattention \
    --item-freq "public:$TMP/freq.txt" --item-freq-noise 3 --out "$TMP/x"
[ -e "$TMP/x" ] && fail "a refused run created its output folder"

# --item-freq public:FILE: a malformed or empty file is bad input (exit 2, file:line: field), found
# before anything is trained
ra="$small --dp --noise-multiplier 1 --reattention"
printf '1 0.5\n2 1.5\n' > "$TMP/badfreq.txt"
expect 2 "item-freq: .*badfreq.txt:2: fraction: '1.5'" -- "$BIN" train $ra --item-freq "public:$TMP/badfreq.txt" --out "$TMP/x"
printf '1 0.5\n99 0.1\n' > "$TMP/baditem.txt"
expect 2 "baditem.txt:2: item: '99' is not an item id in 1..30" -- "$BIN" train $ra --item-freq "public:$TMP/baditem.txt" \
    --out "$TMP/x"
: > "$TMP/empty.txt"
expect 2 "empty.txt: file: no .item fraction. lines" -- "$BIN" train $ra --item-freq "public:$TMP/empty.txt" --out "$TMP/x"
[ -e "$TMP/x" ] && fail "a run with a bad frequency file created its output folder"
expect 0 "item frequencies from the public file" -- "$BIN" train $ra --item-freq "public:$TMP/freq.txt" --out "$TMP/ra"

# demo: --dp is refused (the demo always trains a private model); flags of a skipped run are refused;
# --reattention applies to the private run
demo="--users 60 --items 20 --epochs 1 --dp-epochs 1 --dp-batch-size 16 --max-len 6 --d-model 8 --no-progress"
expect 2 "\-\-dp: the demo always trains a DP-SGD model" -- "$BIN" demo $demo --dp --out "$TMP/d"
expect 2 "\-\-max-grad-norm is a DP-SGD flag: it sets the private run, which --no-private skips" -- "$BIN" demo $demo \
    --no-private --max-grad-norm 2 --out "$TMP/d"
expect 2 "\-\-dp-epochs sets the private run" -- "$BIN" demo $demo --no-private --out "$TMP/d"
expect 2 "leave nothing to train" -- "$BIN" demo $demo --no-private --no-nonprivate --out "$TMP/d"
expect 2 "\-\-reattention-scale is a Re-Attention flag" -- "$BIN" demo $demo --reattention-scale 2 --out "$TMP/d"
expect 0 "Re-Attention on" -- "$BIN" demo ${demo/--epochs 1 /} --no-nonprivate --reattention --out "$TMP/d"

# eval: --threads; a --batch-size beyond the dataset's users costs nothing (it used to allocate the
# scores of 2^20 users, failing under a memory limit with an allocator's file:line)
"$BIN" train $small --out "$TMP/m" >/dev/null 2>&1 || fail "train a model"
expect 0 "NDCG@10" -- "$BIN" eval --model "$TMP/m/model.safetensors" --data "$TMP/seq.txt" --format sequences --threads 1
# not under AddressSanitizer, which needs more address space (the inner shell reports the abort quietly)
if bash -c 'ulimit -v 4000000 && "$0" --help; s=$?; exit $s' "$BIN" >/dev/null 2>&1; then
    expect 0 "NDCG@10" -- bash -c "ulimit -v 4000000; exec \"\$@\"" sh "$BIN" eval --model "$TMP/m/model.safetensors" \
        --data "$TMP/seq.txt" --format sequences --batch-size 1048576
    # 4001 users x 100,001 items of scores: 1.5 GiB, more than a 1 GiB limit allows: refused up front
    awk 'BEGIN { for (u = 1; u <= 4000; u++) printf "%d %d %d %d\n", u, 1 + u % 1000, 1 + (u * 7) % 1000, 1 + (u * 13) % 1000;
         printf "9999"; for (i = 1; i <= 100000; i++) printf " %d", i; printf "\n" }' > "$TMP/wide.txt"
    expect 2 "\-\-batch-size 1048576: scoring 4001 users at once needs 1.5 GiB .*lower --batch-size" -- \
        bash -c "ulimit -v 1000000; exec \"\$@\"" sh "$BIN" eval --model "$TMP/m/model.safetensors" \
        --data "$TMP/wide.txt" --format sequences --batch-size 1048576
else
    echo "cli_flags: no address-space limit possible here (AddressSanitizer?): the memory checks of eval are skipped"
fi

cli_finish

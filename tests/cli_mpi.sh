#!/usr/bin/env bash
# Data-parallel training under mpirun (docs/distributed.md): with 2 and 3 processes (uneven shards,
# more ranks than cores) a seeded run gives the one-process run's model up to float summation order
# (max relative difference of any parameter below 1e-4; the ledger and epsilon identical), for
# non-private and DP-SGD recommendation, DP-SGD text classification and DP-FP text classification (2
# micro-batches a step; the same under 1 process with small physical chunks, and micro-batches smaller
# than the number of processes, i.e. empty shards); a run checkpointed under 2 processes resumes under 3
# (DP-SGD recommendation, DP-FP text); a rank killed mid-run ends the whole job within seconds with a
# non-zero status; commands other than the training ones refuse to run as several processes.
# Skipped (exit 77) without an MPI build or mpirun. As root (CI) mpirun needs --allow-run-as-root.
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_mpi "$@"
"$BIN" --version | grep -q "mpi: built" || { echo "cli_mpi: dpformer built without MPI: skipped"; exit 77; }
command -v mpirun > /dev/null || { echo "cli_mpi: no mpirun: skipped"; exit 77; }
python3 -c 'import json' 2>/dev/null || { echo "cli_mpi: no python3: skipped"; exit 77; }
export ASAN_OPTIONS=detect_leaks=0 # Open MPI does not free its allocations at exit
export OMP_NUM_THREADS=1
MPI="mpirun --allow-run-as-root --oversubscribe"

awk 'BEGIN { srand(3); for (u = 1; u <= 400; u++) { printf "%d", u; n = 5 + int(rand() * 12);
     for (k = 0; k < n; k++) printf " %d", 1 + int(rand() * rand() * 150); printf "\n" } }' > "$TMP/seq.txt"
base="--data $TMP/seq.txt --format sequences --max-len 10 --d-model 16 --batch-size 48 --no-progress --seed 4"
rec="$base --epochs 2"

# the largest relative difference between two model files' F32 tensors (the same names and shapes);
# with a third argument "nokeybias", the attention's key bias is left out (see DP-FP below)
compare() {
    python3 - "$1" "$2" "${3:-}" <<'PY'
import array, json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k != "__metadata__" and v["dtype"] == "F32":
            a = array.array("f"); a.frombytes(d[v["data_offsets"][0]:v["data_offsets"][1]]); out[k] = a
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
def kept(k, i):
    n = len(a[k]) // 3
    return not (sys.argv[3] == "nokeybias" and k.endswith("attn.qkv.bias") and n <= i < 2 * n)
print(max(abs(x - y) / max(1e-3, abs(x)) for k in a for i, (x, y) in enumerate(zip(a[k], b[k])) if kept(k, i)))
PY
}
close() { # model A, model B, what, tolerance (default 1e-4), nokeybias
    local d tol=${4:-1e-4}
    d=$(compare "$1" "$2" "${5:-}") || { fail "$3: cannot compare $1 and $2"; return; }
    echo "cli_mpi: $3: parameters differ by $d (relative)"
    python3 -c "import sys; sys.exit(0 if float('$d') < $tol else 1)" || fail "$3: parameters differ by $d (relative; tolerance $tol)"
}
same_eps() { # ledger A, ledger B, what
    python3 - "$1" "$2" <<'PY' || fail "$3: privacy.json differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("epsilon", "delta", "events"):
    assert a.get(k) == b.get(k), (k, a.get(k), b.get(k))
PY
}

for mode in np dp; do
    flags=""
    [ "$mode" = dp ] && flags="--dp --noise-multiplier 1 --seeded-noise"
    "$BIN" train $rec $flags --out "$TMP/$mode-1" > "$TMP/$mode-1.log" 2>&1 || fail "$mode: one process failed"
    for np in 2 3; do
        $MPI -np $np "$BIN" train $rec $flags --out "$TMP/$mode-$np" > "$TMP/$mode-$np.log" 2>&1 ||
            fail "$mode: mpirun -np $np failed: $(tail -5 "$TMP/$mode-$np.log")"
        # non-private AdamW steps divide by sqrt(v) of rarely-seen rows, which magnifies the summation-order
        # differences (measured: 4e-4); under DP the noise dominates v (measured: 1e-6)
        tol=1e-4
        [ "$mode" = np ] && tol=3e-3
        close "$TMP/$mode-1/model.safetensors" "$TMP/$mode-$np/model.safetensors" "$mode, $np processes" $tol
        [ "$mode" = dp ] && same_eps "$TMP/dp-1/privacy.json" "$TMP/dp-$np/privacy.json" "dp, $np processes"
        # one set of outputs, written by rank 0; epoch lines printed once
        n=$(grep -c '^epoch 1/2' "$TMP/$mode-$np.log")
        [ "$n" -eq 1 ] || fail "$mode, $np processes: the epoch line was printed $n times"
    done
done

# text classification, DP-SGD
printf 'sentence\tlabel\n' > "$TMP/t.tsv"
# sentences of 7 to 12 word tokens: the length-sorted chunks run on windows shorter than --max-len, and
# each example keeps the dropout masks of its place in a full window (docs/distributed.md)
awk 'BEGIN { srand(5); for (i = 0; i < 300; i++) { l = int(rand() * 2); s = l ? "good fine great" : "bad poor awful";
     f = ""; for (k = int(rand() * 6); k > 0; k--) f = f " more"; printf "%s %d words%s here\t%d\n", s, i, f, l } }' >> "$TMP/t.tsv"
txt="--train $TMP/t.tsv --tokenizer words --max-len 16 --d-model 16 --n-heads 2 --n-layers 1 --epochs 2 --batch-size 32 --no-progress --seed 2 --dp --noise-multiplier 1 --seeded-noise"
"$BIN" train-text $txt --out "$TMP/txt-1" > "$TMP/txt-1.log" 2>&1 || fail "text: one process failed: $(tail -3 "$TMP/txt-1.log")"
$MPI -np 2 "$BIN" train-text $txt --out "$TMP/txt-2" > "$TMP/txt-2.log" 2>&1 || fail "text: mpirun -np 2 failed: $(tail -5 "$TMP/txt-2.log")"
close "$TMP/txt-1/model.safetensors" "$TMP/txt-2/model.safetensors" "text, 2 processes"
same_eps "$TMP/txt-1/privacy.json" "$TMP/txt-2/privacy.json" "text, 2 processes"

# text classification, DP-FP: M = 2 Poisson micro-batches a step, each example's representation noise
# drawn once for the whole micro-batch, so neither the number of processes nor the physical chunks
# (--max-physical-batch 5: several chunks per micro-batch and per shard) change the computation:
# tolerance 3e-3 (measured: 1e-4 to 3.5e-4 in the release build, up to 9e-4 in the sanitizer run's
# debug build; a noise multiplier 1% larger moves parameters by 2.9). Left out: the attention's key
# bias, whose gradient is zero in exact arithmetic (softmax ignores a score added to a whole row);
# without gradient noise AdamW turns the sums' last bits there into steps of size lr (relative
# differences up to 0.1 against the 1e-3 floor)
fp="--train $TMP/t.tsv --tokenizer words --max-len 16 --d-model 16 --n-heads 2 --n-layers 1 --epochs 2 --batch-size 32 --no-progress --seed 2 --dpfp --micro-batches 2 --noise-multiplier 1 --seeded-noise"
"$BIN" train-text $fp --out "$TMP/fp-1" > "$TMP/fp-1.log" 2>&1 || fail "dp-fp: one process failed: $(tail -3 "$TMP/fp-1.log")"
"$BIN" train-text $fp --max-physical-batch 5 --out "$TMP/fp-1c" > "$TMP/fp-1c.log" 2>&1 ||
    fail "dp-fp: one process, small chunks failed: $(tail -3 "$TMP/fp-1c.log")"
close "$TMP/fp-1/model.safetensors" "$TMP/fp-1c/model.safetensors" "dp-fp, one process, other physical chunks" 3e-3 nokeybias
same_eps "$TMP/fp-1/privacy.json" "$TMP/fp-1c/privacy.json" "dp-fp, one process, other physical chunks"
for np in 2 3; do
    $MPI -np $np "$BIN" train-text $fp --max-physical-batch 5 --out "$TMP/fp-$np" > "$TMP/fp-$np.log" 2>&1 ||
        fail "dp-fp: mpirun -np $np failed: $(tail -5 "$TMP/fp-$np.log")"
    close "$TMP/fp-1/model.safetensors" "$TMP/fp-$np/model.safetensors" "dp-fp, $np processes" 3e-3 nokeybias
    same_eps "$TMP/fp-1/privacy.json" "$TMP/fp-$np/privacy.json" "dp-fp, $np processes"
    grep -q '"mechanism_events":' "$TMP/fp-$np/metrics.jsonl" || fail "dp-fp, $np processes: no mechanism_events in metrics.jsonl"
    n=$(grep -c '^epoch 1/2' "$TMP/fp-$np.log")
    [ "$n" -eq 1 ] || fail "dp-fp, $np processes: the epoch line was printed $n times"
done
# micro-batches of 1 example in expectation (often 0 or 1): under 3 processes most shards are empty
tiny=${fp/--batch-size 32/--batch-size 2}
tiny=${tiny/--epochs 2/--epochs 1}
"$BIN" train-text $tiny --out "$TMP/fpt-1" > "$TMP/fpt-1.log" 2>&1 || fail "dp-fp, tiny: one process failed: $(tail -3 "$TMP/fpt-1.log")"
$MPI -np 3 "$BIN" train-text $tiny --out "$TMP/fpt-3" > "$TMP/fpt-3.log" 2>&1 ||
    fail "dp-fp, tiny: mpirun -np 3 failed: $(tail -5 "$TMP/fpt-3.log")"
close "$TMP/fpt-1/model.safetensors" "$TMP/fpt-3/model.safetensors" "dp-fp, empty shards" 3e-3 nokeybias
same_eps "$TMP/fpt-1/privacy.json" "$TMP/fpt-3/privacy.json" "dp-fp, empty shards"
# checkpointed under 2 processes (1 epoch), resumed under 3: the 2-epoch one-process model
$MPI -np 2 "$BIN" train-text ${fp/--epochs 2/--epochs 1} --out "$TMP/fpres" > "$TMP/fpres1.log" 2>&1 ||
    fail "dp-fp resume: first part failed: $(tail -3 "$TMP/fpres1.log")"
$MPI -np 3 "$BIN" train-text --resume "$TMP/fpres" --epochs 2 > "$TMP/fpres2.log" 2>&1 ||
    fail "dp-fp resume: second part failed: $(tail -5 "$TMP/fpres2.log")"
close "$TMP/fp-1/model.safetensors" "$TMP/fpres/model.safetensors" "dp-fp, resumed under another number of processes" 3e-3 nokeybias
same_eps "$TMP/fp-1/privacy.json" "$TMP/fpres/privacy.json" "dp-fp, resumed run"

# checkpointed under 2 processes (1 epoch), resumed under 3 for the second: the 2-epoch one-process model
$MPI -np 2 "$BIN" train $base --dp --noise-multiplier 1 --seeded-noise --epochs 1 --out "$TMP/res" > "$TMP/res1.log" 2>&1 ||
    fail "resume: first part failed: $(tail -3 "$TMP/res1.log")"
$MPI -np 3 "$BIN" train --resume "$TMP/res" --epochs 2 > "$TMP/res2.log" 2>&1 || fail "resume: second part failed: $(tail -5 "$TMP/res2.log")"
close "$TMP/dp-1/model.safetensors" "$TMP/res/model.safetensors" "resumed under another number of processes"
same_eps "$TMP/dp-1/privacy.json" "$TMP/res/privacy.json" "resumed run"

# a rank that dies ends the job: no process waits forever
big="--data $TMP/seq.txt --format sequences --max-len 10 --d-model 16 --epochs 500 --batch-size 16 --no-progress --no-checkpoints"
$MPI -np 2 "$BIN" train $big --out "$TMP/kill" > "$TMP/kill.log" 2>&1 &
job=$!
victim=""
for _ in $(seq 100); do
    victim=$(pgrep -f "dpformer train $big" | sort -n | tail -1)
    [ -n "$victim" ] && [ "$(pgrep -f "dpformer train $big" | wc -l)" -ge 2 ] && break
    sleep 0.1
done
sleep 1
[ -n "$victim" ] && kill -9 "$victim"
start=$(date +%s)
rc=0
for _ in $(seq 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
if kill -0 $job 2>/dev/null; then
    fail "a killed rank: the job still runs after 30 s"
    pkill -9 -f "dpformer train $big"
fi
wait $job
rc=$?
[ "$rc" -ne 0 ] || fail "a killed rank: the job exited 0"

# the other commands run as one process
expect 2 "runs as one process" -- $MPI -np 2 "$BIN" eval --model "$TMP/dp-1/model.safetensors" --data "$TMP/seq.txt" --format sequences

cli_finish

#!/usr/bin/env bash
# The privacy-audit experiment of docs/experiments/audit.md: `dpformer audit` on every task —
# recommendation (amazon-beauty), text classification (SST-2, DP-SGD and DP-FP) and language modelling
# (Tiny Shakespeare) — at epsilon 1, 4 and 8 (delta 1e-6) and the no-privacy control (DP-SGD with
# noise multiplier 0 and clip norm 1000: the same code path without privacy, which shows the audit has
# power). Each run uses the secure generator (no --seeded-noise: secret inclusion bits, real noise).
#
#   experiments/audit.sh [BUDGET] [OUT]
#
# BUDGET: reduced (default: subsets of the data, about 7 minutes of CPU time, 14 wall-clock on 2 cores) or
# full (the whole training files, more canaries and epochs: hours). OUT (default runs/exp-audit) gets a
# folder per run (audit.json, the model, metrics.jsonl, privacy.json, the log, time.txt) and summary.md,
# the table of docs/experiments/audit.md. Environment: BIN (default build/dpformer), DATA (default
# ../shared/data), TOK (default ../shared/tokenizers/gpt2), THREADS (default 1), TASKS (default
# "rec text lm"), EPSILONS (default "1 4 8").
set -u
cd "$(dirname "$0")/.." || exit 1
BUDGET=${1:-reduced}
OUT=${2:-runs/exp-audit}
BIN=${BIN:-build/dpformer}
DATA=${DATA:-../shared/data}
TOK=${TOK:-../shared/tokenizers/gpt2}
THREADS=${THREADS:-1}
TASKS=${TASKS:-rec text lm}
EPSILONS=${EPSILONS:-1 4 8}

case "$BUDGET" in
reduced)
    REC_USERS=5000 REC_CANARIES=1000 REC_EPOCHS=10 REC_D=32
    TEXT_N=16000 TEXT_CANARIES=1000 TEXT_EPOCHS=10 TEXT_D=32
    LM_N=2000 LM_CANARIES=1000 LM_EPOCHS=4 LM_D=32 ;;
full)
    REC_USERS=0 REC_CANARIES=2000 REC_EPOCHS=20 REC_D=64
    TEXT_N=0 TEXT_CANARIES=2000 TEXT_EPOCHS=10 TEXT_D=64
    LM_N=0 LM_CANARIES=2000 LM_EPOCHS=4 LM_D=64 ;;
*)
    echo "usage: experiments/audit.sh [reduced|full] [OUT]" >&2
    exit 2 ;;
esac
[ -x "$BIN" ] || { echo "audit.sh: no dpformer binary at $BIN (build it, or set BIN)" >&2; exit 2; }
mkdir -p "$OUT/data" || exit 1

# The data: the first N lines (0: all) of each training file.
first() { if [ "$2" -gt 0 ]; then head -n "$2" "$1"; else cat "$1"; fi; }
first "$DATA/amazon-beauty/sequences.txt" "$REC_USERS" > "$OUT/data/beauty.txt"
first "$DATA/sst2/train.tsv" "$((TEXT_N > 0 ? TEXT_N + 1 : 0))" > "$OUT/data/sst2.tsv" # + the header line
grep -v '^[[:space:]]*$' "$DATA/tinyshakespeare/input.txt" | first /dev/stdin "$LM_N" > "$OUT/data/shakespeare.txt"

# The flags of each task (the user's training configuration; the audit adds only its own flags).
REC=(--data "$OUT/data/beauty.txt" --format sequences --canaries "$REC_CANARIES" --epochs "$REC_EPOCHS"
     --batch-size 128 --d-model "$REC_D")
TEXT=(--task text --train "$OUT/data/sst2.tsv" --tokenizer words --pool mean --max-len 32 --d-model "$TEXT_D"
      --n-heads 2 --n-layers 1 --batch-size 256 --epochs "$TEXT_EPOCHS" --lr 1e-2 --canaries "$TEXT_CANARIES")
LM=(--task lm --train "$OUT/data/shakespeare.txt" --tokenizer "$TOK" --max-len 24 --d-model "$LM_D" --n-heads 2
    --n-layers 1 --dropout 0 --batch-size 64 --epochs "$LM_EPOCHS" --lr 1e-2 --canaries "$LM_CANARIES" --canary-len 12)
CONTROL=(--dp --noise-multiplier 0 --max-grad-norm 1000)

# run NAME FLAGS...: one audit into OUT/NAME; exit status 3 (a violation) is recorded, not fatal.
run() {
    local name=$1
    shift
    mkdir -p "$OUT/$name"
    echo "== $name: $BIN audit $* --threads $THREADS --no-progress --out $OUT/$name" >&2
    /usr/bin/time -f "%e %U %S" -o "$OUT/$name/time.txt" \
        "$BIN" audit "$@" --threads "$THREADS" --no-progress --out "$OUT/$name" > "$OUT/$name/report.txt" \
        2> "$OUT/$name/log.txt"
    local rc=$?
    echo "$rc" > "$OUT/$name/exit.txt"
    cat "$OUT/$name/report.txt" >&2
    [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || echo "audit.sh: $name exited $rc (see $OUT/$name/log.txt)" >&2
}

for task in $TASKS; do
    case "$task" in
    rec) flags=("${REC[@]}") ;;
    text) flags=("${TEXT[@]}") ;;
    lm) flags=("${LM[@]}") ;;
    *) echo "audit.sh: unknown task $task" >&2; exit 2 ;;
    esac
    run "$task-control" "${flags[@]}" "${CONTROL[@]}"
    for eps in $EPSILONS; do
        run "$task-dpsgd-eps$eps" "${flags[@]}" --dp --target-epsilon "$eps" --delta 1e-6
        [ "$task" = text ] && run "$task-dpfp-eps$eps" "${flags[@]}" --dpfp --target-epsilon "$eps" --delta 1e-6
    done
done

# The table: claimed epsilon, the lower bound at 95%, AUC, TPR at 1% FPR, time (wall-clock and CPU).
python3 - "$OUT" "$BUDGET" > "$OUT/summary.md" <<'EOF'
import json, os, sys
out, budget = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(out)):
    p = os.path.join(out, name, "audit.json")
    if not os.path.isfile(p):
        continue
    d = json.load(open(p))
    wall, user, sys_ = (float(x) for x in open(os.path.join(out, name, "time.txt")).read().split()[-3:])
    rc = open(os.path.join(out, name, "exit.txt")).read().strip()
    eps = "none (control)" if d["epsilon"] is None else "%.0f%s" % (d["epsilon"], "" if d["mode"] == "dp-sgd" else " (representations only)")
    print("| %s | %s | %s | %d (%d in) | %.3f | %d / %d | %.3f | %.3f | %.0f / %.0f | %s | %s |" % (
        d["task"], d["mode"], eps, d["canaries"], d["included"], d["epsilon_lower_bound"], d["correct"], d["guesses"],
        d["auc"], d["tpr_at_fpr"], wall, user + sys_, rc, d["verdict"].split(":")[0]))
EOF
{ echo "| task | mode | claimed epsilon | canaries | lower bound (95%) | correct / guesses | AUC | TPR@1%FPR | wall / CPU s | exit | verdict |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  cat "$OUT/summary.md"; } > "$OUT/summary.tmp" && mv "$OUT/summary.tmp" "$OUT/summary.md"
cat "$OUT/summary.md"

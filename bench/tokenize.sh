#!/usr/bin/env bash
# GPT-2 tokenizer speed (docs/tokenizer.md#speed): MB of text per second encoded by `dpformer tokenize`
# and by bench/tokenize_ref.py (OpenAI's encoder.py algorithm in Python with the `regex` module), on
# one core, on the same input, checking that both give the same ids. The input is WikiText-2 (valid +
# test, 2.4 MB): once, as a cold start (empty word cache), and 10 times over, where most pre-tokens
# hit the cache. Each figure counts encoding only (no loading, no reading or writing); the wall time
# of the whole command is printed next to it.
# Usage: bench/tokenize.sh [path/to/dpformer] [tokenizer folder] [data folder]   Environment: ROUNDS (3)
set -euo pipefail
BIN=${1:-build/dpformer}
TOK=${2:-../shared/tokenizers/gpt2}
DATA=${3:-../shared/data}
ROUNDS=${ROUNDS:-3}
REF="$(dirname "$0")/tokenize_ref.py"
for f in "$DATA/wikitext-2/valid.txt" "$DATA/wikitext-2/test.txt"; do
  [ -f "$f" ] || { echo "bench/tokenize.sh: $f not found" >&2; exit 2; }
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cat "$DATA/wikitext-2/valid.txt" "$DATA/wikitext-2/test.txt" > "$OUT/once.txt"
for _ in $(seq 1 10); do cat "$OUT/once.txt"; done > "$OUT/ten.txt"
ONE_CORE=""
command -v taskset > /dev/null && ONE_CORE="taskset -c 0"

echo "# $(date -u +%Y-%m-%dT%H:%MZ)  $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; one thread pinned to core 0"
echo "# input: WikiText-2 valid + test, $(wc -c < "$OUT/once.txt") bytes, $(wc -l < "$OUT/once.txt") lines; median of $ROUNDS runs"

# run NAME INPUT COMMAND...: median MB/s (from the --stats line) and median wall seconds; output kept
run() {
  local name=$1 input=$2 speeds="" walls="" s t0 t1
  shift 2
  for _ in $(seq 1 "$ROUNDS"); do
    t0=$(date +%s.%N)
    $ONE_CORE "$@" --tokenizer "$TOK" --stats < "$input" > "$OUT/$name.ids" 2> "$OUT/$name.err"
    t1=$(date +%s.%N)
    s=$(sed -n 's/.* = \([0-9.]*\) MB\/s.*/\1/p' "$OUT/$name.err")
    [ -n "$s" ] || { echo "bench/tokenize.sh: $name: no speed reported: $(cat "$OUT/$name.err")" >&2; exit 1; }
    speeds="$speeds $s"
    walls="$walls $(echo "$t1 - $t0" | bc -l)"
  done
  median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  printf '%-36s %8.2f MB/s   whole command %6.2f s\n' "$name" "$(echo "$speeds" | median)" "$(echo "$walls" | median)"
}

run "dpformer tokenize (1x, cold cache)" "$OUT/once.txt" "$BIN" tokenize
cp "$OUT/dpformer tokenize (1x, cold cache).ids" "$OUT/c.ids"
run "dpformer tokenize (10x)" "$OUT/ten.txt" "$BIN" tokenize
if python3 -c 'import regex' 2> /dev/null; then
  run "tokenize_ref.py (1x)" "$OUT/once.txt" python3 "$REF"
  if cmp -s "$OUT/c.ids" "$OUT/tokenize_ref.py (1x).ids"; then
    echo "same ids from both on every line ($(wc -w < "$OUT/c.ids") tokens)"
  else
    echo "IDS DIFFER between dpformer and tokenize_ref.py" >&2
    exit 1
  fi
  sed -n 's/.*(\(Python .*\))$/reference: \1/p' "$OUT/tokenize_ref.py (1x).err"
else
  echo "tokenize_ref.py: skipped (the Python module regex is not installed)"
fi

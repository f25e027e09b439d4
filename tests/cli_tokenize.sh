#!/usr/bin/env bash
# `dpformer tokenize`: text -> ids -> text on a tiny vocabulary written here (ids checked by hand), the
# round trip of random lines (invalid UTF-8 included) in text and JSON modes, special tokens, and every
# kind of bad input refused with its line and status 2. With ../shared/tokenizers (or
# $DPFORMER_TOKENIZERS): GPT-2's reference.jsonl through --json, and, where Python has the `regex`
# module, the same ids as bench/tokenize_ref.py (OpenAI's algorithm) on random text and real data.
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_tokenize "$@"
SRC=${DPFORMER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}

# The tiny vocabulary: byte b has id b (in GPT-2's byte-to-character map), then one id per merge, then
# <|endoftext|>: he = 256, hello = 259, or = 261, ld = 263, Ġworld = 264, <|endoftext|> = 266.
mkdir -p "$TMP/tiny"
python3 - "$TMP/tiny" <<'EOF'
import json, sys
bs = list(range(33, 127)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
char = dict(zip(bs, map(chr, cs)))
merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("l", "d"), ("Ġwor", "ld"), ("Ġ", "Ġ")]
vocab = {char[b]: b for b in range(256)}
for i, (a, b) in enumerate(merges):
    vocab[a + b] = 256 + i
vocab["<|endoftext|>"] = 256 + len(merges)
json.dump(vocab, open(sys.argv[1] + "/encoder.json", "w", encoding="utf-8"), ensure_ascii=False)
open(sys.argv[1] + "/vocab.bpe", "w", encoding="utf-8").write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
EOF
tok="$BIN tokenize --tokenizer $TMP/tiny"

# ids by hand; an empty line gives an empty line; decoding gives the text back
out=$(printf 'hello world\n\nheld\n' | $tok)
[ "$out" = "$(printf '259 264\n\n256 263')" ] || fail "encode: got '$out'"
out=$(printf '259 264\n\n50 51\n' | $tok --decode)
[ "$out" = "$(printf 'hello world\n\n23')" ] || fail "decode: got '$out'"
# special tokens: text by default, the id with --allow-special; decoded as their text, or skipped
[ "$(printf 'hello<|endoftext|>\n' | $tok)" = "259 60 124 101 110 100 111 102 116 101 120 116 124 62" ] || fail "special as text"
[ "$(printf 'hello<|endoftext|> world\n' | $tok --allow-special)" = "259 266 264" ] || fail "--allow-special"
[ "$(printf '259 266 264\n' | $tok --decode)" = "hello<|endoftext|> world" ] || fail "decode a special token"
[ "$(printf '259 266 264\n' | $tok --decode --skip-special)" = "hello world" ] || fail "--skip-special"

# round trip of random lines: printable text, white space, UTF-8 and bytes that are not UTF-8
LC_ALL=C awk 'BEGIN { srand(5); for (i = 0; i < 400; i++) { s = ""; n = int(rand() * 60);
     for (k = 0; k < n; k++) { u = rand();
       if (u < 0.5) s = s sprintf("%c", 32 + int(rand() * 95));
       else if (u < 0.6) s = s (rand() < 0.5 ? " " : "\t");
       else if (u < 0.8) s = s sprintf("%c", 128 + int(rand() * 128));
       else s = s (rand() < 0.5 ? "héllo wörld" : "日本 don'"'"'t 12"); }
     print s } }' > "$TMP/random.txt"
python3 -c 'import sys; open(sys.argv[1], "rb").read().decode()' "$TMP/random.txt" 2>/dev/null &&
    fail "the random text has no invalid UTF-8"
$tok < "$TMP/random.txt" > "$TMP/random.ids" || fail "encode random lines"
[ "$(wc -l < "$TMP/random.ids")" -eq 400 ] || fail "one output line per input line"
$tok --decode < "$TMP/random.ids" > "$TMP/random.back" || fail "decode random lines"
cmp -s "$TMP/random.txt" "$TMP/random.back" || fail "random lines: decode(encode(x)) != x"

# JSON: strings with escapes in, arrays out; a text with a newline; the way back
[ "$(printf '"hello\\nworld"\n' | $tok --json)" = "[259,10,119,261,263]" ] || fail "--json encode"
[ "$(printf '"\\u0068e \\ud83d\\ude00"  \n' | $tok --json)" = "[256,32,240,159,152,128]" ] || fail "--json escapes"
[ "$(printf '[259, 10, 119,261, 263]\n[]\n' | $tok --json --decode)" = "$(printf '"hello\\nworld"\n""')" ] ||
    fail "--json decode"
[ "$(printf '[34, 92, 9, 1, 233]\n' | $tok --json --decode)" = '"\"\\\t\u0001�"' ] ||
    fail "--json decode escapes, and U+FFFD for bytes that are not UTF-8"
[ "$(printf '[226, 130, 97]\n' | $tok --json --decode)" = '"�a"' ] || fail "one U+FFFD per maximal ill-formed part"
# the same round trip through JSON (bytes that are not UTF-8 travel raw inside the JSON string)
python3 -c '
import json, sys
for line in open(sys.argv[1], "rb"):
    s = line.rstrip(b"\n").decode("utf-8", "surrogateescape")
    sys.stdout.buffer.write(json.dumps(s, ensure_ascii=False).encode("utf-8", "surrogateescape") + b"\n")' \
    "$TMP/random.txt" > "$TMP/random.json"
$tok --json < "$TMP/random.json" | tr -d '[]' | tr ',' ' ' > "$TMP/random.json.ids"
cmp -s "$TMP/random.ids" "$TMP/random.json.ids" || fail "--json and text mode give different ids"

# bad input: the line, status 2, the lines before it written
expect 2 "stdin:2: 'abc' is not a token id" -- bash -c "printf '1 2\nabc\n' | $tok --decode"
[ "$(printf '1 2\nabc\n' | $tok --decode 2>/dev/null)" = $'\x01\x02' ] || fail "lines before a bad one are written"
expect 2 "stdin:1: id 267 at position 1 is not in the vocabulary (ids 0..266)" -- bash -c "printf '1 267\n' | $tok --decode"
expect 2 "stdin:1: id -1 at position 0" -- bash -c "printf -- '-1\n' | $tok --decode"
expect 2 "stdin:1: '99999999999' is not a token id" -- bash -c "printf '99999999999\n' | $tok --decode"
expect 2 "stdin:2: invalid UTF-8 at byte 3 (0xE9)" -- bash -c "printf 'ok\nabc\xe9\n' | $tok --strict-utf8"
expect 0 "" -- bash -c "printf 'ok\nabc\xe9\n' | $tok"
expect 2 "stdin:1: expected a JSON string" -- bash -c "printf 'hello\n' | $tok --json"
expect 2 "stdin:1: the string has no closing quote" -- bash -c "printf '\"abc\n' | $tok --json"
expect 2 "stdin:1: text after the JSON string" -- bash -c "printf '\"a\" \"b\"\n' | $tok --json"
expect 2 "stdin:1: a lone low surrogate" -- bash -c "printf '\"\\\\udc00\"\n' | $tok --json"
expect 2 "stdin:1: a control character inside the string must be escaped" -- bash -c "printf '\"a\tb\"\n' | $tok --json"
expect 2 "stdin:2: element 1 of the array is not an integer id" -- bash -c "printf '[1]\n[1, 2.5]\n' | $tok --json --decode"
expect 2 "stdin:1: expected a JSON array" -- bash -c "printf '1 2\n' | $tok --json --decode"
# flags and files
expect 2 "tokenizer is required" -- "$BIN" tokenize
expect 2 "applies to encoding" -- "$BIN" tokenize --tokenizer "$TMP/tiny" --decode --allow-special
expect 2 "applies to --decode" -- "$BIN" tokenize --tokenizer "$TMP/tiny" --skip-special
expect 2 "$TMP/missing: cannot open" -- "$BIN" tokenize --tokenizer "$TMP/missing"
mkdir -p "$TMP/bad" && cp "$TMP/tiny/encoder.json" "$TMP/bad/" && printf 'h e\nh e\n' > "$TMP/bad/vocab.bpe"
expect 2 "$TMP/bad/vocab.bpe:2: merge 'h e': the pair appears twice" -- bash -c "echo hi | $BIN tokenize --tokenizer $TMP/bad"
expect 0 "encoding .* MB/s of text on one thread" -- bash -c "$tok --stats < $TMP/random.txt"

# GPT-2, where the vocabulary is at hand
TOKS=${DPFORMER_TOKENIZERS:-$SRC/../shared/tokenizers}
if [ -f "$TOKS/gpt2/reference.jsonl" ]; then
  gpt2="$BIN tokenize --tokenizer $TOKS/gpt2"
  python3 -c '
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    print(json.dumps(r["text"], ensure_ascii=False))
    print(json.dumps(r["ids"], separators=(",", ":")), file=sys.stderr)' "$TOKS/gpt2/reference.jsonl" \
      > "$TMP/ref.texts" 2> "$TMP/ref.ids"
  $gpt2 --json < "$TMP/ref.texts" > "$TMP/ref.got" || fail "GPT-2: encode reference.jsonl"
  cmp -s "$TMP/ref.got" "$TMP/ref.ids" || fail "GPT-2: ids differ from reference.jsonl: $(diff "$TMP/ref.got" "$TMP/ref.ids" | head -4)"
  $gpt2 --json --decode < "$TMP/ref.got" | cmp -s - "$TMP/ref.texts" || fail "GPT-2: reference texts do not decode back"
  [ "$(printf 'Hello world<|endoftext|>\n' | $gpt2 --allow-special)" = "15496 995 50256" ] || fail "GPT-2: <|endoftext|>"
  if python3 -c 'import regex' 2>/dev/null; then
    ref="python3 $SRC/bench/tokenize_ref.py --tokenizer $TOKS/gpt2"
    $gpt2 < "$TMP/random.txt" > "$TMP/g.c" && $ref < "$TMP/random.txt" > "$TMP/g.py" || fail "GPT-2: run both on random lines"
    cmp -s "$TMP/g.c" "$TMP/g.py" || fail "GPT-2: random lines: ids differ from tokenize_ref.py"
    for f in wikitext-2/valid.txt tinyshakespeare/input.txt e2e/devset.csv; do
      d=${DPFORMER_DATA:-$SRC/../shared/data}/$f
      [ -f "$d" ] || continue
      head -2000 "$d" > "$TMP/real.txt"
      $gpt2 < "$TMP/real.txt" > "$TMP/r.c" && $ref < "$TMP/real.txt" > "$TMP/r.py" || fail "GPT-2: run both on $f"
      cmp -s "$TMP/r.c" "$TMP/r.py" || fail "GPT-2: $f: ids differ from tokenize_ref.py"
    done
  else
    echo "cli_tokenize: skipped: comparison with bench/tokenize_ref.py (Python module regex not installed)"
  fi
else
  echo "cli_tokenize: skipped: GPT-2 checks ($TOKS/gpt2/reference.jsonl not found; set DPFORMER_TOKENIZERS)"
fi
cli_finish

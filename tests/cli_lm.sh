#!/usr/bin/env bash
# `dpformer eval-lm`, `generate` and `export --hf` on a tiny random GPT-2 model written here in the Hugging
# Face layout (Python's standard library only) with a tiny byte-level vocabulary: perplexity in text and
# JSON, independent of the batch size, from text, TSV and CSV alike; truncation; greedy and seeded
# sampling reproducible; the export loads back with the same perplexity and its tensors are the
# original bytes; bad flags, malformed folders and the wrong kind of model refused with status 2.
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_lm "$@"

# tokenizer: byte b has id b, then 10 merges (hello = 259, Ġworld = 264), <|endoftext|> = 266; a
# model of that vocabulary (267 tokens, 12 positions, width 16, 2 layers), and one of 100 tokens
python3 - "$TMP" <<'EOF'
import json, os, random, struct, sys
out = sys.argv[1]
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
os.makedirs(out + "/tok")
json.dump(vocab, open(out + "/tok/encoder.json", "w", encoding="utf-8"), ensure_ascii=False)
open(out + "/tok/vocab.bpe", "w", encoding="utf-8").write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))

def safetensors(path, tensors, meta):
    header, off, blobs = {"__metadata__": meta}, 0, []
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data); blobs.append(data)
    h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def model(path, V, L=12, d=16, layers=2, F=64, seed=1):
    rnd = random.Random(seed)
    def t(name, *shape, scale=0.4, base=0.0):
        k = 1
        for s in shape: k *= s
        return (name, "F32", list(shape), struct.pack("<%df" % k, *[base + rnd.gauss(0, scale) for _ in range(k)]))
    ts = [t("wte.weight", V, d), t("wpe.weight", L, d)]
    for l in range(layers):
        p = "h.%d." % l
        ts += [t(p + "ln_1.weight", d, base=1, scale=0.1), t(p + "ln_1.bias", d, scale=0.1),
               t(p + "attn.c_attn.weight", d, 3 * d), t(p + "attn.c_attn.bias", 3 * d, scale=0.1),
               t(p + "attn.c_proj.weight", d, d), t(p + "attn.c_proj.bias", d, scale=0.1),
               t(p + "ln_2.weight", d, base=1, scale=0.1), t(p + "ln_2.bias", d, scale=0.1),
               t(p + "mlp.c_fc.weight", d, F), t(p + "mlp.c_fc.bias", F, scale=0.1),
               t(p + "mlp.c_proj.weight", F, d), t(p + "mlp.c_proj.bias", d, scale=0.1)]
    ts += [t("ln_f.weight", d, base=1, scale=0.1), t("ln_f.bias", d, scale=0.1)]
    os.makedirs(path)
    safetensors(path + "/model.safetensors", ts, {"format": "pt"})
    json.dump({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": V, "n_positions": L,
               "n_embd": d, "n_layer": layers, "n_head": 2, "n_inner": None, "activation_function": "gelu_new",
               "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}, open(path + "/config.json", "w"))
model(out + "/gpt", 267)
model(out + "/small", 100, seed=2)
# a recommender's model file (only its configuration is read before it is refused)
cfg = {"n_items": 20, "max_len": 5, "d_model": 4, "n_heads": 1, "n_layers": 0, "d_ff": 16, "tied": True,
       "causal": True, "dropout": 0.2}
safetensors(out + "/rec.safetensors", [("item_emb.weight", "F32", [21, 4], bytes(21 * 16)),
            ("pos_emb.weight", "F32", [5, 4], bytes(80)), ("ln_f.weight", "F32", [4], bytes(16)),
            ("ln_f.bias", "F32", [4], bytes(16))],
            {"format": "pt", "dpformer.format_version": "1", "dpformer.config": json.dumps(cfg)})
# the same texts as lines, a TSV column and a CSV column (quoted, with a comma and a line break)
texts = ["hello world", "hello, hello world", "the two\nlines", "world", "a longer line of text than the context"]
open(out + "/data.txt", "w").write("\n".join(t.replace("\n", " ") for t in texts) + "\n\n")
open(out + "/data.tsv", "w").write("id\ttext\n" + "".join("%d\t%s\n" % (i, t.replace("\n", " ")) for i, t in enumerate(texts)))
open(out + "/data.csv", "w").write("text,id\r\n" + "".join('"%s",%d\r\n' % (t.replace("\n", " "), i) for i, t in enumerate(texts)))
EOF
[ -d "$TMP/gpt" ] || { echo "cli_lm: could not write the test model" >&2; exit 1; }
M=$TMP/gpt
TOK=$TMP/tok
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# eval-lm: text and JSON; 5 examples (the blank line skipped), perplexity = exp(loss)
expect 0 "perplexity" -- "$BIN" eval-lm --model "$M" --data "$TMP/data.txt" --tokenizer "$TOK"
expect 0 "1 empty line skipped" -- "$BIN" eval-lm --model "$M" --data "$TMP/data.txt" --tokenizer "$TOK"
out=$("$BIN" eval-lm --model "$M" --data "$TMP/data.txt" --tokenizer "$TOK" --json) || fail "eval-lm --json: $out"
python3 - "$out" <<'EOF' || fail "eval-lm --json fields: $out"
import json, math, sys
j = json.loads(sys.argv[1])
assert j["examples"] == 5 and j["empty_skipped"] == 1 and j["truncated"] == 2 and j["max_len"] == 12, j
assert j["predicted_tokens"] == j["tokens"] - 5, j
assert abs(j["perplexity"] - math.exp(j["loss"])) < 1e-9 * j["perplexity"], j
assert j["tokens_per_s"] > 0 and j["device"] == "cpu", j
EOF
ppl=$(printf '%s' "$out" | json_field perplexity)
for args in "--batch-size 1" "--batch-size 4 --threads 1" "--batch-size 64"; do
    p=$("$BIN" eval-lm --model "$M" --data "$TMP/data.txt" --tokenizer "$TOK" --json $args | json_field perplexity)
    python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-5 * b)" "$p" "$ppl" ||
        fail "eval-lm $args: perplexity $p, with the default batch $ppl"
done
for f in tsv csv; do
    p=$("$BIN" eval-lm --model "$M" --data "$TMP/data.$f" --column text --tokenizer "$TOK" --json | json_field perplexity)
    python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-5 * b)" "$p" "$ppl" ||
        fail "eval-lm --column text on .$f: perplexity $p, on the text file $ppl"
done
n=$("$BIN" eval-lm --model "$M" --data "$TMP/data.txt" --tokenizer "$TOK" --max-len 4 --json | json_field truncated)
[ "$n" = 4 ] || fail "--max-len 4: $n examples cut, expected 4 (all but hello world)"

# refusals (status 2, naming the flag, file or field)
expect 2 "required" -- "$BIN" eval-lm --model "$M" --data "$TMP/data.txt"
expect 2 "context of 12" -- "$BIN" eval-lm --model "$M" --data "$TMP/data.txt" --tokenizer "$TOK" --max-len 13
expect 2 "no token to predict" -- "$BIN" eval-lm --model "$M" --data "$TMP/data.txt" --tokenizer "$TOK" --max-len 1
expect 2 "unknown flag" -- "$BIN" eval-lm --model "$M" --data "$TMP/data.txt" --tokenizer "$TOK" --bogus 1
expect 2 "nope.txt" -- "$BIN" eval-lm --model "$M" --data "$TMP/nope.txt" --tokenizer "$TOK"
expect 2 ".tsv or .csv" -- "$BIN" eval-lm --model "$M" --data "$TMP/data.txt" --tokenizer "$TOK" --column text
expect 2 'no column "body"' -- "$BIN" eval-lm --model "$M" --data "$TMP/data.tsv" --column body --tokenizer "$TOK"
expect 2 "more than the model's vocabulary of 100" -- "$BIN" eval-lm --model "$TMP/small" --data "$TMP/data.txt" --tokenizer "$TOK"
expect 2 "family rec" -- "$BIN" eval-lm --model "$TMP/rec.safetensors" --data "$TMP/data.txt" --tokenizer "$TOK"
mkdir -p "$TMP/nocfg"
expect 2 "nocfg: a folder, but not a Hugging Face model folder: it has no config.json" -- \
    "$BIN" eval-lm --model "$TMP/nocfg" --data "$TMP/data.txt" --tokenizer "$TOK"
cp -r "$M" "$TMP/llama"
sed -i 's/"gpt2"/"llama"/' "$TMP/llama/config.json"
expect 2 'llama/config.json: field "model_type" is "llama"' -- \
    "$BIN" eval-lm --model "$TMP/llama" --data "$TMP/data.txt" --tokenizer "$TOK"
cp -r "$M" "$TMP/notensor"
python3 - "$TMP/notensor/model.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
h["h.1.mlp.c_fc.bias_renamed"] = h.pop("h.1.mlp.c_fc.bias")
s = json.dumps(h).encode(); s += b" " * (-len(s) % 8)
open(p, "wb").write(struct.pack("<Q", len(s)) + s + b[8 + n:])
EOF
expect 2 "notensor/model.safetensors: tensor h.1.mlp.c_fc.bias is missing" -- \
    "$BIN" eval-lm --model "$TMP/notensor" --data "$TMP/data.txt" --tokenizer "$TOK"

# generate: the prompt and its continuation; greedy and seeded sampling reproducible
g1=$("$BIN" generate --model "$M" --tokenizer "$TOK" --prompt "hello" --max-tokens 8 --temperature 0) || fail "generate greedy"
g2=$("$BIN" generate --model "$M" --tokenizer "$TOK" --prompt "hello" --max-tokens 8 --temperature 0 --threads 1)
[ "$g1" = "$g2" ] || fail "greedy generation differs between runs: '$g1' / '$g2'"
case "$g1" in hello*) ;; *) fail "generate does not start with the prompt: '$g1'" ;; esac
s1=$("$BIN" generate --model "$M" --tokenizer "$TOK" --prompt "hello world" --max-tokens 20 --seed 5 --top-k 40 --top-p 0.9)
s2=$("$BIN" generate --model "$M" --tokenizer "$TOK" --prompt "hello world" --max-tokens 20 --seed 5 --top-k 40 --top-p 0.9)
[ "$s1" = "$s2" ] || fail "sampling with one seed differs between runs"
[ "$("$BIN" generate --model "$M" --tokenizer "$TOK" --prompt "hi there" --max-tokens 0)" = "hi there" ] ||
    fail "--max-tokens 0 prints the prompt alone"
expect 2 "\-\-top-k applies to sampling" -- "$BIN" generate --model "$M" --tokenizer "$TOK" --prompt x --temperature 0 --top-k 3
expect 2 "\-\-seed applies to sampling" -- "$BIN" generate --model "$M" --tokenizer "$TOK" --prompt x --temperature 0 --seed 3
expect 2 "top-p" -- "$BIN" generate --model "$M" --tokenizer "$TOK" --prompt x --top-p 0
expect 2 "required" -- "$BIN" generate --model "$M" --tokenizer "$TOK"

# export: loads back with the same perplexity, its tensors are the original bytes, re-export is identical
expect 0 "wrote" -- "$BIN" export --hf "$TMP/out" --model "$M" --tokenizer "$TOK"
for f in config.json model.safetensors vocab.json merges.txt; do [ -f "$TMP/out/$f" ] || fail "export lacks $f"; done
p=$("$BIN" eval-lm --model "$TMP/out" --data "$TMP/data.txt" --tokenizer "$TMP/out" --json | json_field perplexity)
python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(a != b)" "$p" "$ppl" || fail "exported model: perplexity $p, original $ppl"
python3 - "$M/model.safetensors" "$TMP/out/model.safetensors" <<'EOF' || fail "exported tensors differ from the original's"
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); meta = h.pop("__metadata__", {})
    return meta, {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]]) for k, v in h.items()}
_, a = load(sys.argv[1]); meta, b = load(sys.argv[2])
assert meta.get("format") == "pt"
assert sorted("transformer." + k for k in a) == sorted(b), (sorted(a), sorted(b))
for k, v in a.items():
    assert b["transformer." + k] == v, k
EOF
expect 0 "wrote" -- "$BIN" export --hf "$TMP/out2" --model "$TMP/out"
cmp -s "$TMP/out/model.safetensors" "$TMP/out2/model.safetensors" || fail "re-export is not byte-identical"
expect 0 "wrote" -- "$BIN" export --hf "$TMP/out4/" --model "$TMP/out2"
cmp -s "$TMP/out/model.safetensors" "$TMP/out4/model.safetensors" || fail "export to a path ending in / differs"
[ -z "$(ls -A "$TMP" | grep '\.tmp-')" ] || fail "an export left a temporary folder: $(ls -A "$TMP")"
expect 2 "exists and is not empty" -- "$BIN" export --hf "$TMP/out" --model "$M"
expect 2 "family rec" -- "$BIN" export --hf "$TMP/out3" --model "$TMP/rec.safetensors"
expect 2 "has 267 tokens, the model's vocabulary 100" -- "$BIN" export --hf "$TMP/out3" --model "$TMP/small" --tokenizer "$TOK"
[ ! -e "$TMP/out3" ] || fail "a refused export left $TMP/out3 behind"
expect 2 "required" -- "$BIN" export --model "$M"

for c in eval-lm generate export; do expect 0 "usage" -- "$BIN" $c --help; done
expect 0 "eval-lm" -- "$BIN" --help
cli_finish

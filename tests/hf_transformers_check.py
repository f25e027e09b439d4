#!/usr/bin/env python3
"""dpformer's GPT-2 layout and tokenizer against Hugging Face `transformers` and `tokenizers` (issue: language
models). Needs torch, transformers and tokenizers; exits 77 (skipped) without them.

1. A random-weight GPT-2-family model made by dpformer (`train-lm` for a few steps, tied and untied) and
   exported with `export --hf` loads with GPT2LMHeadModel.from_pretrained; the perplexity of every held
   line under transformers (each line <|endoftext|> + BPE(line) + <|endoftext|>, every token after the
   first predicted) equals `dpformer eval-lm`'s of the same folder to 1e-4 relative, line by line.
2. The exported tokenizer files load with GPT2TokenizerFast, and `tokenizers`' byte-level BPE built from
   the GPT-2 files gives the ids of `dpformer tokenize --json` for every text of reference.jsonl (those
   without the special token) and every held line.
Usage: hf_transformers_check.py DPFORMER_BINARY GPT2_TOKENIZER_DIR WORK_DIR"""
import json, math, os, subprocess, sys

try:
    import torch
    import transformers
    import tokenizers
except ImportError as e:
    print(f"hf_transformers_check: skipped: {e}")
    sys.exit(77)

BIN, TOK, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
EOT = 50256
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg)


def run(*args, stdin=None):
    r = subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"dpformer {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r.stdout


def dp_ids(texts):
    out = run("tokenize", "--tokenizer", TOK, "--json", stdin="".join(json.dumps(t) + "\n" for t in texts))
    return [json.loads(line) for line in out.splitlines()]


lines = ["The Eagle is a coffee shop near the river.", "It serves cheap Italian food, and it is family friendly.",
         "Zizzi's (a pub) — rated 5 out of 5 — isn't near Café Rouge.", "   spaces   and\ttabs  ",
         "1990s numbers: 3.14, 2,718 and 42%!", "Ünïcödé tëxt, 日本語 and emoji 🙂."]
os.makedirs(WORK, exist_ok=True)
train = os.path.join(WORK, "train.txt")
with open(train, "w", encoding="utf-8") as f:
    f.write("\n".join(lines * 4) + "\n")
ids = dp_ids(lines)

# ---- 1. models: tied and untied ----
torch.set_default_dtype(torch.float64)
for head in ("tied", "untied"):
    out = os.path.join(WORK, head)
    flags = ["--untied"] if head == "untied" else []
    run("train-lm", "--train", train, "--tokenizer", TOK, "--d-model", "32", "--n-layers", "2", "--n-heads", "2",
        "--max-len", "48", "--epochs", "1", "--batch-size", "4", "--lr", "3e-3", "--seed", "5", "--threads", "1",
        "--no-progress", "--no-checkpoints", *flags, "--out", out)
    hf = out + "-hf"
    run("export", "--hf", hf, "--model", os.path.join(out, "model.safetensors"), "--tokenizer", TOK)
    model = transformers.GPT2LMHeadModel.from_pretrained(hf, torch_dtype=torch.float64).eval()
    tied = model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    if tied != (head == "tied"):
        fail(f"{head}: transformers loaded a {'tied' if tied else 'untied'} head")
    ctx = model.config.n_positions
    for k, (text, tok) in enumerate(zip(lines, ids)):
        seq = ([EOT] + tok + [EOT])[:ctx]
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0]
        nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(seq[1:]), reduction="sum").item()
        ref = math.exp(nll / (len(seq) - 1))
        one = os.path.join(WORK, f"line{k}.txt")
        with open(one, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        got = json.loads(run("eval-lm", "--model", hf, "--data", one, "--tokenizer", TOK, "--json"))["perplexity"]
        rel = abs(got - ref) / ref
        print(f"{head} line {k}: transformers perplexity {ref:.6f}, dpformer {got:.6f}, relative difference {rel:.2e}")
        if not rel <= 1e-4:
            fail(f"{head} line {k}: perplexity {got} vs transformers {ref}")
    fast = transformers.GPT2TokenizerFast.from_pretrained(hf)
    if fast(lines[0])["input_ids"] != ids[0]:
        fail(f"{head}: the exported tokenizer files give {fast(lines[0])['input_ids']}, dpformer {ids[0]}")

# ---- 2. tokenizer ----
with open(os.path.join(TOK, "reference.jsonl"), encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f if line.strip()]
texts = [t for t in texts if "<|endoftext|>" not in t] + lines
bpe = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(os.path.join(TOK, "encoder.json"),
                                                           os.path.join(TOK, "vocab.bpe")))
bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = tokenizers.decoders.ByteLevel()
mine = dp_ids(texts)
bad = 0
for t, m in zip(texts, mine):
    theirs = bpe.encode(t).ids
    if theirs != m:
        bad += 1
        if bad <= 5:
            fail(f"tokenizers gives {theirs[:20]} for {t[:60]!r}, dpformer {m[:20]}")
print(f"tokenizer: {len(texts) - bad} of {len(texts)} texts give the same ids as tokenizers {tokenizers.__version__}")
if bad:
    fail(f"{bad} texts differ from tokenizers")
print(f"transformers {transformers.__version__}, torch {torch.__version__}: {failures} failure(s)")
sys.exit(1 if failures else 0)

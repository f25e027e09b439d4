#!/usr/bin/env python3
"""Reference for tests/test_lm_torch.c: an independent GPT-2 forward pass in PyTorch (float64), written
out here from GPT-2's definition (pre-LN blocks, Conv1D weights stored [in, out], causal attention with
padded keys masked, the tanh GELU, tied or untied head), on random weights saved in the Hugging Face
layout. Writes into OUT:

  tok/encoder.json, tok/vocab.bpe   a byte-level GPT-2 vocabulary without merges: byte b is token b,
                                    <|endoftext|> is 256 (257 tokens)
  data.txt                          text lines (one blank, one longer than the context)
  tied/, untied/                    config.json + model.safetensors (tied: F32, no name prefix, the
                                    attention-mask buffers; untied: F16 weights, "transformer." prefix,
                                    lm_head.weight, n_inner set)
  ref_tied.safetensors, ref_untied.safetensors
      tokens I32 [B, T] (-1 past an example's length), lengths I32 [B], logits F32 [B, T, V] (0 past
      the length), losses F64 [B] (each example's mean cross-entropy over its predicted tokens);
      metadata perplexity / loss / predicted over the whole of data.txt, one line = one example,
      <|endoftext|> + bytes + <|endoftext|> cut to the context, blank lines skipped.

Exit status 77 when torch cannot be imported (the C test then reports itself skipped)."""
import json
import math
import os
import struct
import sys

try:
    import torch
except ImportError:
    print("lm_torch_ref.py: PyTorch is not importable", file=sys.stderr)
    sys.exit(77)

V, EOT, CTX = 257, 256, 24


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def raw(t, dtype):
    t = t.detach().contiguous()
    return (t.to(torch.float32) if dtype == "F32" else t.to(torch.float16)).numpy().tobytes()


def random_model(gen, d, n_layer, n_head, d_ff, tied):
    def r(*shape, scale=0.35):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale

    W = {"wte": r(V, d), "wpe": r(CTX, d), "ln_f.weight": 1 + r(d, scale=0.2), "ln_f.bias": r(d, scale=0.1)}
    for l in range(n_layer):
        p = f"h.{l}."
        W[p + "ln_1.weight"], W[p + "ln_1.bias"] = 1 + r(d, scale=0.2), r(d, scale=0.1)
        W[p + "attn.c_attn.weight"], W[p + "attn.c_attn.bias"] = r(d, 3 * d), r(3 * d, scale=0.1)
        W[p + "attn.c_proj.weight"], W[p + "attn.c_proj.bias"] = r(d, d), r(d, scale=0.1)
        W[p + "ln_2.weight"], W[p + "ln_2.bias"] = 1 + r(d, scale=0.2), r(d, scale=0.1)
        W[p + "mlp.c_fc.weight"], W[p + "mlp.c_fc.bias"] = r(d, d_ff), r(d_ff, scale=0.1)
        W[p + "mlp.c_proj.weight"], W[p + "mlp.c_proj.bias"] = r(d_ff, d), r(d, scale=0.1)
    if not tied:
        W["lm_head"] = r(V, d)
    return W


def layer_norm(x, w, b):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def gelu_new(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(W, ids, lengths, n_layer, n_head, tied):
    """ids [B, T] (padding: any id), lengths [B] → logits [B, T, V] in float64."""
    B, T = ids.shape
    d = W["wte"].shape[1]
    hd = d // n_head
    x = W["wte"][ids] + W["wpe"][:T][None]  # right padding: position t is the t-th token
    valid = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # [B, T]
    allowed = torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None] & valid[:, None, None, :]
    for l in range(n_layer):
        p = f"h.{l}."
        h = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"])
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]  # Conv1D: x @ W[in, out] + b
        q, k, v = qkv.split(d, dim=-1)
        q, k, v = (t.view(B, T, n_head, hd).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~allowed, float("-inf"))
        a = torch.softmax(s, dim=-1)
        a = torch.nan_to_num(a)  # padded query rows: nothing visible
        y = (a @ v).transpose(1, 2).reshape(B, T, d)
        x = x + y @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"])
        f = gelu_new(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + f @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = layer_norm(x, W["ln_f.weight"], W["ln_f.bias"])
    return x @ (W["wte"] if tied else W["lm_head"]).T


def example_tokens(line):
    return ([EOT] + list(line.encode("utf-8")) + [EOT])[:CTX]


def main():
    out = sys.argv[1]
    gen = torch.Generator().manual_seed(20240607)
    # the tanh GELU written out is torch's approximate="tanh"
    xs = torch.linspace(-6, 6, 101, dtype=torch.float64)
    assert torch.allclose(gelu_new(xs), torch.nn.functional.gelu(xs, approximate="tanh"), atol=1e-12)

    os.makedirs(f"{out}/tok", exist_ok=True)
    char = bytes_to_unicode()
    vocab = {char[b]: b for b in range(256)}
    vocab["<|endoftext|>"] = EOT
    with open(f"{out}/tok/encoder.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(f"{out}/tok/vocab.bpe", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")

    lines = ["hello world", "The quick brown fox.", "", "a", "differential privacy for language models, "
             "with one example per line", "x y z", "tokens: 1 2 3"]
    with open(f"{out}/data.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    examples = [example_tokens(l) for l in lines if l]

    variants = {
        "tied": dict(d=16, n_layer=2, n_head=2, d_ff=64, tied=True, dtype="F32", prefix="", n_inner=None),
        "untied": dict(d=16, n_layer=2, n_head=4, d_ff=40, tied=False, dtype="F16", prefix="transformer.", n_inner=40),
    }
    for name, v in variants.items():
        W = random_model(gen, v["d"], v["n_layer"], v["n_head"], v["d_ff"], v["tied"])
        if v["dtype"] == "F16":  # the reference computes with the stored (rounded) values
            W = {k: t.to(torch.float16).to(torch.float64) for k, t in W.items()}
        os.makedirs(f"{out}/{name}", exist_ok=True)
        config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_positions": CTX,
                  "n_ctx": CTX, "n_embd": v["d"], "n_layer": v["n_layer"], "n_head": v["n_head"],
                  "n_inner": v["n_inner"], "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
                  "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "tie_word_embeddings": v["tied"],
                  "bos_token_id": EOT, "eos_token_id": EOT}
        with open(f"{out}/{name}/config.json", "w") as f:
            json.dump(config, f, indent=2)
        tensors = []
        for k, t in W.items():
            hf = "lm_head.weight" if k == "lm_head" else v["prefix"] + (k + ".weight" if k in ("wte", "wpe") else k)
            tensors.append((hf, v["dtype"], t.shape, raw(t, v["dtype"])))
            if k.endswith("ln_1.bias") and v["prefix"] == "":  # the buffers old files carry, to be ignored
                l = k.split(".")[1]
                tensors.append((f"h.{l}.attn.bias", "F32", (1, 1, CTX, CTX),
                                torch.tril(torch.ones(CTX, CTX)).numpy().astype("float32").tobytes()))
                tensors.append((f"h.{l}.attn.masked_bias", "F32", (), struct.pack("<f", -1e4)))
        write_safetensors(f"{out}/{name}/model.safetensors", tensors, {"format": "pt"})

        # every example: logits and its mean loss; the token-weighted perplexity over the file
        B, T = len(examples), max(len(e) for e in examples)
        ids = torch.zeros(B, T, dtype=torch.long)
        for b, e in enumerate(examples):
            ids[b, : len(e)] = torch.tensor(e)
        lengths = [len(e) for e in examples]
        with torch.no_grad():
            logits = forward(W, ids, lengths, v["n_layer"], v["n_head"], v["tied"])
        logp = torch.log_softmax(logits, dim=-1)
        losses, total, count = [], 0.0, 0
        for b, n in enumerate(lengths):
            nll = -logp[b, torch.arange(n - 1), ids[b, 1:n]]
            losses.append(nll.mean().item())
            total += nll.sum().item()
            count += n - 1
        tok = ids.clone().to(torch.int32)
        for b, n in enumerate(lengths):
            tok[b, n:] = -1
            logits[b, n:] = 0
        write_safetensors(
            f"{out}/ref_{name}.safetensors",
            [("tokens", "I32", (B, T), tok.numpy().tobytes()),
             ("lengths", "I32", (B,), torch.tensor(lengths, dtype=torch.int32).numpy().tobytes()),
             ("logits", "F32", (B, T, V), logits.to(torch.float32).numpy().tobytes()),
             ("losses", "F64", (B,), struct.pack(f"<{B}d", *losses))],
            {"perplexity": "%.17g" % math.exp(total / count), "loss": "%.17g" % (total / count),
             "predicted": str(count)})


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch baseline for `dpformer bench step`: the time of one non-private training step.

The model is dpformer's Transformer recommender written in PyTorch (same parameters, same
conventions); a step is forward, backward and an AdamW update on a batch of random item sequences.
Run it with Debian's Python, which has Debian's PyTorch (apt-get install python3-torch):

    /usr/bin/python3 bench/pytorch_step.py --shape games --threads 2 --warmup 1 --steps 5
    /usr/bin/python3 bench/pytorch_step.py --shape both        # games, then ml1m

One JSON line per shape is printed on stdout (see bench/README.md for the fields).
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

# Dataset shapes: number of items V and window length L.
SHAPES = {
    "games": {"items": 23716, "maxlen": 50},   # Amazon-Games
    "ml1m": {"items": 3417, "maxlen": 200},    # MovieLens-1M
}


def build_model(torch, items, maxlen, d, layers, heads):
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        """Pre-LN block: x += Attn(LN1(x)); x += FFN(LN2(x))."""

        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d, eps=1e-5)
            self.qkv = nn.Linear(d, 3 * d)          # fused Q, K, V projection, with bias
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d, eps=1e-5)
            self.fc1 = nn.Linear(d, 4 * d)
            self.fc2 = nn.Linear(4 * d, d)

        def forward(self, x, allowed):
            b, length, _ = x.shape
            dh = d // heads
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
            q, k, v = (t.view(b, length, heads, dh).transpose(1, 2) for t in (q, k, v))
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dh))
            # The most negative finite value rather than -inf: a padding query, whose keys are all
            # masked, then gets a uniform (finite, unused) row instead of NaN.
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
            att = torch.softmax(scores, dim=-1) @ v
            x = x + self.proj(att.transpose(1, 2).reshape(b, length, d))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))   # exact (erf) GELU

    class Recommender(nn.Module):
        def __init__(self):
            super().__init__()
            self.item = nn.Embedding(items + 1, d)   # row 0: padding
            self.pos = nn.Embedding(maxlen, d)       # learned positions 0..L-1
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln_f = nn.LayerNorm(d, eps=1e-5)
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.normal_(p, std=0.02)

        def forward(self, seq, target):
            b, length = seq.shape
            x = self.item(seq) + self.pos.weight[:length].unsqueeze(0)
            causal = torch.ones(length, length, dtype=torch.bool).tril()
            allowed = (causal.unsqueeze(0) & (seq != 0).unsqueeze(1)).unsqueeze(1)   # (B, 1, Lq, Lk)
            for blk in self.blocks:
                x = blk(x, allowed)
            h = self.ln_f(x)
            # Tied output layer over items 1..V only (the padding row is not a class).
            logits = h @ self.item.weight[1:].t()                                        # (B, L, V)
            mask = target != 0
            nll = F.cross_entropy(logits.reshape(-1, items), (target - 1).clamp(min=0).reshape(-1),
                                  reduction="none").view(b, length)
            per_example = (nll * mask).sum(1) / mask.sum(1).clamp(min=1)
            return per_example.mean()

    return Recommender()


def make_batch(torch, gen, batch, items, maxlen, full):
    """Random item sequences, left-padded: input s[0..L-1] and next-item targets."""
    seq = torch.randint(1, items + 1, (batch, maxlen + 1), generator=gen)
    if not full:
        # Each example keeps only its last n+1 items (1 <= n <= L); the rest is padding.
        n = torch.randint(1, maxlen + 1, (batch, 1), generator=gen)
        keep = torch.arange(maxlen + 1).unsqueeze(0) >= (maxlen - n)
        seq = seq * keep
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def run_shape(args, shape):
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    items, maxlen = SHAPES[shape]["items"], SHAPES[shape]["maxlen"]
    model = build_model(torch, items, maxlen, args.d, args.layers, args.heads)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    times, loss = [], float("nan")
    for i in range(args.warmup + args.steps):
        seq, target = make_batch(torch, gen, args.batch, items, maxlen, args.lengths == "full")
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(seq, target)
        out.backward()
        opt.step()
        dt = time.perf_counter() - t0
        loss = out.item()
        if i >= args.warmup:
            times.append(dt * 1e3)
    return {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "shape": shape,
        "ms_per_step": round(statistics.median(times), 3),
        "steps": args.steps,
        "threads": args.threads,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),  # Linux: KiB
        "batch": args.batch,
        "items": items,
        "maxlen": maxlen,
        "d": args.d,
        "layers": args.layers,
        "heads": args.heads,
        "lengths": args.lengths,
        "step_ms": [round(t, 3) for t in times],
        "loss": round(loss, 6),
        "params": sum(p.numel() for p in model.parameters()),
    }


def main():
    ap = argparse.ArgumentParser(description="Time one non-private training step of the PyTorch baseline.")
    ap.add_argument("--shape", nargs="+", choices=sorted(SHAPES) + ["both"], default=["both"],
                    help="dataset shape(s): games (V=23716, L=50), ml1m (V=3417, L=200) or both")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    ap.add_argument("--batch", type=int, default=256)
    # The same names as `dpformer bench step` are accepted too.
    ap.add_argument("--d", "--d-model", dest="d", type=int, default=64, help="model width")
    ap.add_argument("--layers", "--n-layers", dest="layers", type=int, default=2)
    ap.add_argument("--heads", "--n-heads", dest="heads", type=int, default=1)
    ap.add_argument("--lengths", choices=["full", "random"], default="full",
                    help="full windows (no padding, the default) or random lengths 1..L, left-padded")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.batch < 1 or args.d % args.heads:
        ap.error("need steps >= 1, warmup >= 0, threads >= 1, batch >= 1 and heads dividing d")
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("pytorch_step.py: PyTorch not found; install python3-torch and run with /usr/bin/python3")

    shapes = []
    for s in args.shape:
        for name in (list(SHAPES) if s == "both" else [s]):  # games, then ml1m
            if name not in shapes:
                shapes.append(name)
    if len(shapes) == 1:
        print(json.dumps(run_shape(args, shapes[0])), flush=True)
        return
    # Several shapes: one process each, so that each peak RSS is that shape's alone.
    for shape in shapes:
        argv = ["--shape", shape, "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--threads", str(args.threads), "--batch", str(args.batch), "--d", str(args.d),
                "--layers", str(args.layers), "--heads", str(args.heads), "--lengths", args.lengths,
                "--seed", str(args.seed)]
        rc = subprocess.call([sys.executable, os.path.abspath(__file__)] + argv)
        if rc:
            sys.exit(rc)


if __name__ == "__main__":
    main()

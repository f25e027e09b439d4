#!/usr/bin/python3
"""PyTorch baseline for `dpformer bench step`: the time of one non-private training step.

The model is dpformer's Transformer recommender written in PyTorch (same parameters, same
conventions); a step is forward, backward and an AdamW update on a batch of random item sequences.
Run it with Debian's Python, which has Debian's PyTorch (apt-get install python3-torch):

    /usr/bin/python3 bench/pytorch_step.py --shape games --threads 2 --warmup 1 --steps 5
    /usr/bin/python3 bench/pytorch_step.py --shape both        # games, then ml1m

On a GPU (`--device cuda`) it needs a Python whose PyTorch is a CUDA build (Debian's is CPU only):

    python3 bench/pytorch_step.py --device cuda --shape games --warmup 3 --steps 20
    python3 bench/pytorch_step.py --device cuda --shape gpt2 --warmup 3 --steps 20

With --data FILE (a dataset in dpformer's `interactions` or `sequences` format, e.g.
../shared/data/amazon-games/interactions.txt) the batches are those of a real-data epoch instead: V is
the file's number of items, and each batch holds the left-padded training windows of `batch` users
taken in a shuffled order (a user of n items trains on its first n-2, as dpformer's leave-one-out
split; its window holds min(L, n-3) inputs), with random item ids of those lengths (the time does not
depend on the ids). The JSON line adds "data", "train_users", "steps_per_epoch" and
"epoch_seconds_est" (steps per epoch times the mean timed step): an epoch's training time estimated
from --steps of its batches, next to `dpformer train --epochs 1`'s epoch_seconds.

Shapes games and ml1m default to d 64, 2 layers, 1 head and batch 256; gpt2 (GPT-2-small
dimensions in this same model: V=50257, L=128) defaults to d 768, 12 layers, 12 heads and batch 16.
--d, --layers, --heads and --batch, when given, override these for every shape.
On cuda the arithmetic is float32 with TF32 off (as dpformer's float32 default), each step is timed
between two torch.cuda.synchronize() calls, and the JSON line adds "device", "gpu" and
"peak_gpu_mb" (torch.cuda.max_memory_allocated()).

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

# Dataset shapes: number of items V and window length L, and each shape's default model and batch
# (used where --d, --layers, --heads or --batch is not given).
SMALL = {"d": 64, "layers": 2, "heads": 1, "batch": 256}
SHAPES = {
    "games": {"items": 23716, "maxlen": 50, **SMALL},   # Amazon-Games
    "ml1m": {"items": 3417, "maxlen": 200, **SMALL},    # MovieLens-1M
    # GPT-2-small dimensions (vocabulary, width, depth, heads) in this same model.
    "gpt2": {"items": 50257, "maxlen": 128, "d": 768, "layers": 12, "heads": 12, "batch": 16},
}
HYPER = ("d", "layers", "heads", "batch")


def resolve(args, shape):
    """The shape's d, layers, heads and batch, each overridden by its option when given."""
    return {k: SHAPES[shape][k] if getattr(args, k) is None else getattr(args, k) for k in HYPER}


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
            causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
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


def read_windows(path, maxlen):
    """The number of items and each training user's window length (min(L, n-3) for a user of n items,
    users whose training prefix n-2 has at least 2 items) of a dataset file: `user item` lines
    (interactions) or `user item item ...` lines (sequences)."""
    users, items = {}, set()
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 2:
                continue
            users.setdefault(fields[0], 0)
            users[fields[0]] += len(fields) - 1
            items.update(fields[1:])
    lengths = [min(maxlen, n - 3) for n in users.values() if n - 2 >= 2]
    return len(items), lengths


def run_shape(args, shape):
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    cuda = args.device == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            sys.exit("pytorch_step.py: --device cuda but torch.cuda.is_available() is false "
                     "(this PyTorch is %s)" % torch.__version__)
        # Plain float32, as dpformer's float32 default: no TF32 in matrix products or convolutions.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.cuda.reset_peak_memory_stats()
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)   # batches are drawn on the CPU, as without cuda
    items, maxlen = SHAPES[shape]["items"], SHAPES[shape]["maxlen"]
    hp = resolve(args, shape)
    lengths = None
    if args.data:
        items, lengths = read_windows(args.data, maxlen)
        order = torch.randperm(len(lengths), generator=gen).tolist()
    model = build_model(torch, items, maxlen, hp["d"], hp["layers"], hp["heads"])
    if cuda:
        model = model.to(device)   # before the optimizer, so that its state is on the GPU too
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    times, loss = [], float("nan")
    for i in range(args.warmup + args.steps):
        if lengths is None:
            seq, target = make_batch(torch, gen, hp["batch"], items, maxlen, args.lengths == "full")
        else:   # the epoch's i-th batch of users (wrapping around), left-padded to L
            users = [order[(i * hp["batch"] + k) % len(order)] for k in range(hp["batch"])]
            seq, target = make_batch(torch, gen, hp["batch"], items, maxlen, True)
            keep = torch.tensor([[t >= maxlen - lengths[u] for t in range(maxlen)] for u in users])
            seq, target = seq * keep, target * keep
        if cuda:
            # Copying the batch to the GPU is not timed (as making it is not); wait for all queued
            # work before reading the clock on either side of the step.
            seq, target = seq.to(device), target.to(device)
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(seq, target)
        out.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        loss = out.item()
        if i >= args.warmup:
            times.append(dt * 1e3)
    gpu = {}
    if cuda:
        gpu = {
            "device": "cuda",
            "gpu": torch.cuda.get_device_name(),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2.0 ** 20, 1),
        }
    real = {}
    if lengths is not None:
        steps_per_epoch = math.ceil(len(lengths) / hp["batch"])
        real = {"data": args.data, "train_users": len(lengths), "steps_per_epoch": steps_per_epoch,
                "epoch_seconds_est": round(steps_per_epoch * statistics.mean(times) / 1e3, 1)}
    return {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "shape": shape,
        "ms_per_step": round(statistics.median(times), 3),
        "steps": args.steps,
        "threads": args.threads,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),  # Linux: KiB
        **gpu,
        **real,
        "batch": hp["batch"],
        "items": items,
        "maxlen": maxlen,
        "d": hp["d"],
        "layers": hp["layers"],
        "heads": hp["heads"],
        "lengths": "data" if lengths is not None else args.lengths,
        "step_ms": [round(t, 3) for t in times],
        "loss": round(loss, 6),
        "params": sum(p.numel() for p in model.parameters()),
    }


def main():
    ap = argparse.ArgumentParser(description="Time one non-private training step of the PyTorch baseline.")
    ap.add_argument("--shape", nargs="+", choices=sorted(SHAPES) + ["both"], default=["both"],
                    help="shape(s): games (V=23716, L=50), ml1m (V=3417, L=200), both (games and ml1m) "
                         "or gpt2 (V=50257, L=128, GPT-2-small model)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cpu (the default) or cuda: model, batch and optimizer on the GPU, float32, no TF32")
    # Defaults per shape (see SHAPES): 256 and 64, 2, 1 for games and ml1m; 16 and 768, 12, 12 for gpt2.
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: 256; gpt2: 16)")
    # The same names as `dpformer bench step` are accepted too.
    ap.add_argument("--d", "--d-model", dest="d", type=int, default=None,
                    help="model width (default: 64; gpt2: 768)")
    ap.add_argument("--layers", "--n-layers", dest="layers", type=int, default=None,
                    help="blocks (default: 2; gpt2: 12)")
    ap.add_argument("--heads", "--n-heads", dest="heads", type=int, default=None,
                    help="attention heads (default: 1; gpt2: 12)")
    ap.add_argument("--lengths", choices=["full", "random"], default="full",
                    help="full windows (no padding, the default) or random lengths 1..L, left-padded")
    ap.add_argument("--data", default=None,
                    help="a dataset file (interactions or sequences): time batches of its real-data epoch "
                         "(V from the file, L from --shape) and estimate the epoch's training time")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    shapes = []
    for s in args.shape:
        for name in (["games", "ml1m"] if s == "both" else [s]):  # games, then ml1m
            if name not in shapes:
                shapes.append(name)
    for shape in shapes:
        hp = resolve(args, shape)
        if (args.steps < 1 or args.warmup < 0 or args.threads < 1 or hp["batch"] < 1 or hp["d"] < 1
                or hp["layers"] < 1 or hp["heads"] < 1 or hp["d"] % hp["heads"]):
            ap.error("need steps >= 1, warmup >= 0, threads >= 1, batch >= 1, d >= 1, layers >= 1 "
                     "and heads dividing d (shape %s: %s)" % (shape, hp))
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("pytorch_step.py: PyTorch not found; install python3-torch and run with /usr/bin/python3")

    if len(shapes) == 1:
        print(json.dumps(run_shape(args, shapes[0])), flush=True)
        return
    # Several shapes: one process each, so that each peak RSS is that shape's alone.
    for shape in shapes:
        argv = ["--shape", shape, "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--threads", str(args.threads), "--device", args.device, "--lengths", args.lengths,
                "--seed", str(args.seed)]
        for k in HYPER:   # only those given: the others stay per-shape defaults
            if getattr(args, k) is not None:
                argv += ["--" + k, str(getattr(args, k))]
        rc = subprocess.call([sys.executable, os.path.abspath(__file__)] + argv)
        if rc:
            sys.exit(rc)


if __name__ == "__main__":
    main()

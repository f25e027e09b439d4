#!/usr/bin/env python3
"""Summarise experiments/sst2.sh runs as a Markdown table (docs/experiments/dpfp.md).

For each mode (non-private, DP-SGD at each epsilon, DP-FP at each epsilon) the learning rate and
batch size with the best mean DEV accuracy are chosen, over the seeds that every setting of the grid
was run with (so that a setting run with more seeds is not favoured); the table reports the chosen
setting's dev and test accuracy as mean +- std over all its seeds, the epsilon the accountant reported, the time per
epoch, and what epsilon covers. Usage: summarize_sst2.py RUNS_FOLDER
"""
import glob
import os
import re
import statistics
import sys


def parse(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    if "\nmodel:" not in text and not text.startswith("model:"):
        return None
    get = lambda pat: (lambda m: float(m.group(1)) if m else None)(re.search(pat, text))
    return {
        "dev": get(r"dev accuracy\s+([0-9.]+)"),
        "test": get(r"test accuracy\s+([0-9.]+)"),
        "sec": get(r"\(([0-9.]+) s per epoch\)"),
        "eps": get(r"epsilon = ([0-9.]+)"),
        "sigma": get(r"noise multiplier ([0-9.]+)"),
    }


def ms(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    if len(xs) == 1 or max(xs) == min(xs):
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}"


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "runs/sst2"
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.log"))):
        name = os.path.basename(path)[:-4]
        m = re.match(r"(.+)\.lr([^.]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)\.bs([0-9]+)\.s([0-9]+)$", name)
        if not m:
            continue
        r = parse(path)
        if r:
            r["seed"] = m.group(4)
            runs.setdefault(m.group(1), {}).setdefault((m.group(2), m.group(3)), []).append(r)
    order = ["np", "dpsgd-3", "dpsgd-8", "dpfp-3", "dpfp-8"]
    covers = {"np": "no guarantee", "dpsgd": "the trained weights (example-level DP)",
              "dpfp": "the noised representations only: NOT the weights, NOT the labels"}
    print("| mode | ε (δ 1e-6) | σ | chosen lr, batch (of grid) | seeds | dev accuracy | test accuracy | s/epoch (run) | ε covers |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in sorted(runs, key=lambda k: order.index(k) if k in order else 99):
        grid = runs[mode]
        common = set.intersection(*({r["seed"] for r in rs} for rs in grid.values()))
        best = max(grid, key=lambda k: statistics.mean(r["dev"] for r in grid[k] if r["seed"] in common))
        rs = grid[best]
        eps = ms([r["eps"] for r in rs]) if mode != "np" else "∞"
        sig = ms([r["sigma"] for r in rs]) if mode != "np" else ""
        print(f"| {mode} | {eps} | {sig} | {best[0]}, {best[1]} ({len(grid)} settings) | {len(rs)} | {ms([r['dev'] for r in rs])} | "
              f"{ms([r['test'] for r in rs])} | {statistics.mean(r['sec'] for r in rs):.0f} | {covers[mode.split('-')[0]]} |")


if __name__ == "__main__":
    main()

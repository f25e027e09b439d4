#!/usr/bin/env python3
"""Summarise experiments/reattention.sh runs as a Markdown table (docs/experiments/reattention.md).

For each dataset, epsilon and variant (DP Transformer without / with Re-Attention) the learning rate
and batch size with the best mean VALIDATION NDCG@10 over seeds are chosen; the table reports that
setting's test NDCG@10 and HR@10 as mean +- std over seeds and the relative change of Re-Attention.
Non-private rows come from the *.nonprivate.* runs; popularity is printed by the runs' logs.
Usage: summarize_reattention.py RUNS_FOLDER"""
import json
import os
import re
import statistics
import sys


def final(path):
    try:
        for line in open(path):
            d = json.loads(line)
            if d.get("final"):
                return d
    except OSError:
        return None
    return None


def ms(xs):
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"


root = sys.argv[1] if len(sys.argv) > 1 else "runs/reattention"
groups = {}
for name in sorted(os.listdir(root)):
    f = final(os.path.join(root, name, "metrics.jsonl"))
    if not f:
        continue
    m = re.match(r"(.+)\.eps([0-9.]+)\.(dp|ra)\.lr(.+)\.bs([0-9]+)\.s([0-9]+)$", name)
    if m:
        groups.setdefault((m.group(1), float(m.group(2)), m.group(3)), {}).setdefault((m.group(4), m.group(5)), []).append(f)
    elif ".nonprivate." in name:
        groups.setdefault((name.split(".nonprivate")[0], float("inf"), "np"), {}).setdefault(("", ""), []).append(f)
print("| data | ε | variant | lr, batch (chosen on validation) | seeds | test NDCG@10 | test HR@10 | Re-Attention vs DP |")
print("|---|---|---|---|---|---|---|---|")
for key in sorted(groups, key=lambda k: (k[0], k[1], k[2])):
    grid = groups[key]
    best = max(grid, key=lambda k: statistics.mean(r["valid_ndcg10"] for r in grid[k]))
    rs = grid[best]
    nd = [r["test_ndcg10"] for r in rs]
    rel = ""
    if key[2] == "ra" and (key[0], key[1], "dp") in groups:
        g2 = groups[(key[0], key[1], "dp")]
        b2 = max(g2, key=lambda k: statistics.mean(r["valid_ndcg10"] for r in g2[k]))
        base = statistics.mean(r["test_ndcg10"] for r in g2[b2])
        rel = f"{100 * (statistics.mean(nd) / base - 1):+.1f} % NDCG@10" if base > 0 else ""
    eps = "∞" if key[1] == float("inf") else f"{key[1]:g}"
    variant = {"np": "non-private", "dp": "DP-SGD", "ra": "DP-SGD + Re-Attention"}[key[2]]
    print(f"| {key[0]} | {eps} | {variant} | {best[0]}, {best[1]} ({len(grid)} settings) | {len(rs)} | {ms(nd)} | "
          f"{ms([r['test_hr10'] for r in rs])} | {rel} |")

#!/usr/bin/env python3
"""Summarise finished runs of experiments/real_data.sh as a Markdown table (docs/results.md).

Usage: experiments/summarize.py [runs/real]. For every run folder with a final metrics line: test
NDCG@10 / HR@10 of the kept model, the kept epoch, the median training time per epoch (the median is
robust to epochs slowed by other jobs on a shared machine), and for DP runs epsilon, delta, sigma, q
and steps. Uses only the standard library."""
import json
import os
import statistics
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "runs/real"
print("| run | test NDCG@10 | test HR@10 | kept epoch / epochs | s/epoch (median) | privacy |")
print("|---|---|---|---|---|---|")
for name in sorted(os.listdir(root)):
    path = os.path.join(root, name, "metrics.jsonl")
    if not os.path.isfile(path):
        continue
    lines = [json.loads(l) for l in open(path)]
    final = [l for l in lines if l.get("final")]
    epochs = [l for l in lines if "epoch" in l]
    if not final:
        continue
    f = final[0]
    med = statistics.median(e["epoch_seconds"] for e in epochs)
    if "epsilon" in f:
        priv = "ε = %.2f, δ = %g, σ = %.3f, q = %.4g, %d steps" % (
            f["epsilon"], f["delta"], f["noise_multiplier"], f["sample_rate"], f["dp_steps"])
    else:
        priv = "none"
    print("| %s | %.4f | %.4f | %d / %d | %.1f | %s |" % (
        name, f["test_ndcg10"], f["test_hr10"], f["best_epoch"], len(epochs), med, priv))

#!/usr/bin/env python3
"""Summarise experiments/sharing.sh as a Markdown table (docs/experiments/sharing.md): for every dataset,
budget and variant (tied, untied, untied-half), test NDCG@10 and HR@10 of the kept model, mean and
spread (min-max) over the seeds that finished, the number of parameters' variant, epsilon and seconds
per epoch. Usage: experiments/summarize_sharing.py [runs/sharing]. Standard library only."""
import json
import os
import re
import statistics
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "runs/sharing"
runs = {}
for name in sorted(os.listdir(root)):
    m = re.fullmatch(r"(.+)-(np|eps[0-9.]+)-(tied|untied|untied-half)-s([0-9]+)", name)
    path = os.path.join(root, name, "metrics.jsonl")
    if not m or not os.path.isfile(path):
        continue
    final = [json.loads(l) for l in open(path) if '"final":true' in l]
    if not final:
        continue
    f = final[-1]
    runs.setdefault((m.group(1), m.group(2), m.group(3)), []).append(f)

def spread(xs):
    if len(xs) == 1:
        return "%.4f" % xs[0]
    return "%.4f (%.4f-%.4f)" % (statistics.mean(xs), min(xs), max(xs))

print("| dataset | privacy | variant | seeds | test NDCG@10 | test HR@10 | epsilon | s/epoch |")
print("|---|---|---|---|---|---|---|---|")
order = {"tied": 0, "untied": 1, "untied-half": 2}
for (ds, priv, var) in sorted(runs, key=lambda k: (k[0], k[1] != "np", k[1], order[k[2]])):
    fs = runs[(ds, priv, var)]
    eps = "-" if priv == "np" else "%.2f" % statistics.mean(f.get("epsilon", float("nan")) for f in fs)
    print("| %s | %s | %s | %d | %s | %s | %s | %.0f |" % (
        ds, "non-private" if priv == "np" else "DP-SGD " + priv.replace("eps", "ε "), var, len(fs),
        spread([f["test_ndcg10"] for f in fs]), spread([f["test_hr10"] for f in fs]), eps,
        statistics.median(f["seconds_per_epoch"] for f in fs)))

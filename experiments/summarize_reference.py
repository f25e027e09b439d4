#!/usr/bin/env python3
"""Summary of experiments/reference_seeds.sh: for each seed, the test NDCG@10 / HR@10 of the epoch with the
best validation NDCG@10 (the reference's selection) and of the last epoch (what DP-SGD keeps by default),
then their mean, spread and the reference's values.
Usage: python3 experiments/summarize_reference.py runs/reference"""
import glob
import json
import os
import statistics
import sys

REFERENCE = {"ndcg10": 0.0173, "hr10": 0.0331}  # ../shared/docs/reference-values.md, one seed


def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def main(out):
    rows = []
    for d in sorted(glob.glob(os.path.join(out, "games-eps*-s*"))):
        if not os.path.isdir(d):
            continue
        name = os.path.basename(d)
        m = lines(os.path.join(d, "metrics.jsonl"))
        final = [l for l in m if l.get("final")]
        epochs = [l for l in m if "epoch" in l and not l.get("final")]
        last = os.path.join(out, name + ".last-test.json")
        if not final or not os.path.exists(last):
            print(f"{name}: not finished ({len(epochs)} epochs)")
            continue
        f = final[-1]
        lt = json.load(open(last))
        rows.append({"name": name, "best_epoch": f["best_epoch"], "epochs": len(epochs),
                     "best_valid": f["valid_ndcg10"], "last_valid": epochs[-1]["valid_ndcg10"],
                     "best_ndcg10": f["test_ndcg10"], "best_hr10": f["test_hr10"],
                     "last_ndcg10": lt["ndcg10"], "last_hr10": lt["hr10"],
                     "epsilon": f.get("epsilon"), "sigma": f.get("noise_multiplier")})
    print("| run | epochs | best epoch | valid NDCG@10 best / last | test NDCG@10 best-valid epoch | test HR@10 "
          "best-valid epoch | test NDCG@10 last epoch | test HR@10 last epoch | σ | ε |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['epochs']} | {r['best_epoch']} | {r['best_valid']:.4f} / {r['last_valid']:.4f} | "
              f"{r['best_ndcg10']:.4f} | {r['best_hr10']:.4f} | {r['last_ndcg10']:.4f} | {r['last_hr10']:.4f} | "
              f"{r['sigma']:.4f} | {r['epsilon']:.2f} |")
    for key in ("best_ndcg10", "best_hr10", "last_ndcg10", "last_hr10"):
        v = [r[key] for r in rows]
        if not v:
            continue
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        ref = REFERENCE[key.split("_")[1]]
        print(f"{key}: mean {statistics.mean(v):.4f}, sd {sd:.4f}, min {min(v):.4f}, max {max(v):.4f} "
              f"({len(v)} seeds); reference {ref:.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/reference")

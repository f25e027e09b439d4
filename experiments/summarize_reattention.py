#!/usr/bin/env python3
"""Summarise experiments/reattention.sh runs as a Markdown table (docs/experiments/reattention.md).

For each dataset, epsilon and variant (DP Transformer without / with Re-Attention) the learning rate
and batch size with the best mean VALIDATION NDCG@10 over seeds are chosen; the table reports that
setting's test NDCG@10 and HR@10 as mean +- std over seeds and the relative change of Re-Attention.
Non-private rows come from the *.nonprivate.* runs; popularity is printed by the runs' logs.
With --plot FILE.svg it also draws test NDCG@10 against epsilon for both variants (mean and
min-max over seeds of the chosen setting), one panel per dataset, with popularity as a reference line
and non-private training named (it lies far above the private runs) (a self-contained SVG; no plotting library needed).
--nonprivate DATASET=NDCG draws a non-private reference taken from elsewhere (e.g. docs/results.md)
when the folder has no finished non-private run of that dataset.
Usage: summarize_reattention.py RUNS_FOLDER [--plot FILE.svg] [--nonprivate DATASET=NDCG ...]"""
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


args = sys.argv[1:]
plot_path = None
if "--plot" in args:
    i = args.index("--plot")
    plot_path = args[i + 1]
    del args[i:i + 2]
external_np = {}
while "--nonprivate" in args:
    i = args.index("--nonprivate")
    ds, val = args[i + 1].split("=")
    external_np[ds] = float(val)
    del args[i:i + 2]
root = args[0] if args else "runs/reattention"


def popularity(ds):
    """Test NDCG@10 of the popularity baseline, as the runs' logs print it."""
    for name in sorted(os.listdir(root)):
        if name.startswith(ds + ".") and name.endswith(".log"):
            m = re.search(r"test, popularity\s+NDCG@10 ([0-9.]+)", open(os.path.join(root, name)).read())
            if m:
                return float(m.group(1))
    return None
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
chosen = {}
for key in sorted(groups, key=lambda k: (k[0], k[1], k[2])):
    grid = groups[key]
    best = max(grid, key=lambda k: statistics.mean(r["valid_ndcg10"] for r in grid[k]))
    rs = grid[best]
    chosen[key] = [r["test_ndcg10"] for r in rs]
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


def svg_plot(path):
    datasets = sorted({k[0] for k in chosen})
    W, H, pad = 370, 260, 64
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(datasets)}" height="{H + 40}" '
           'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>']
    colors = {"dp": "#1f77b4", "ra": "#d62728"}
    for p, ds in enumerate(datasets):
        x0 = p * W
        pts = {v: sorted((k[1], chosen[k]) for k in chosen if k[0] == ds and k[2] == v) for v in ("dp", "ra")}
        epss = sorted({e for v in pts for e, _ in pts[v]})
        if not epss:
            continue
        ref = {"popularity": popularity(ds)}
        npk = (ds, float("inf"), "np")
        if npk in chosen:
            ref["non-private"] = statistics.mean(chosen[npk])
        elif ds in external_np:
            ref["non-private"] = external_np[ds]
        # the axis spans the private runs and popularity; a reference far above (non-private) is named
        ys = [y for v in pts for _, xs in pts[v] for y in xs] + ([ref["popularity"]] if ref["popularity"] else [])
        lo, hi = min(ys) * 0.85, max(ys) * 1.12
        elo, ehi = min(epss) - 1, max(epss) + 1
        X = lambda e: x0 + pad + (e - elo) / (ehi - elo) * (W - pad - 16)
        Y = lambda y: 20 + (1 - (y - lo) / (hi - lo)) * (H - 40)
        out.append(f'<text x="{x0 + W / 2}" y="14" text-anchor="middle" font-weight="bold">{ds}</text>')
        out.append(f'<line x1="{x0 + pad}" y1="{Y(lo)}" x2="{x0 + W - 16}" y2="{Y(lo)}" stroke="black"/>')
        out.append(f'<line x1="{x0 + pad}" y1="{Y(lo)}" x2="{x0 + pad}" y2="{Y(hi)}" stroke="black"/>')
        for k in range(6):
            y = lo + (hi - lo) * k / 5
            out.append(f'<text x="{x0 + pad - 4}" y="{Y(y) + 4}" text-anchor="end">{y:.4f}</text>')
        for e in epss:
            out.append(f'<text x="{X(e)}" y="{Y(lo) + 14}" text-anchor="middle">{e:g}</text>')
        out.append(f'<text x="{x0 + W / 2}" y="{H + 10}" text-anchor="middle">ε (δ = 1e-6)</text>')
        out.append(f'<text x="{x0 + 12}" y="{H / 2}" transform="rotate(-90 {x0 + 12} {H / 2})" '
                   'text-anchor="middle">test NDCG@10</text>')
        for name, v in ref.items():
            if v is not None and v > hi:
                out.append(f'<text x="{x0 + W - 18}" y="{Y(hi) + 10}" text-anchor="end" fill="gray">'
                           f'{name}: {v:.4f} (above the axis)</text>')
            elif v is not None:
                out.append(f'<line x1="{x0 + pad}" y1="{Y(v)}" x2="{x0 + W - 16}" y2="{Y(v)}" stroke="gray" '
                           'stroke-dasharray="4 3"/>')
                out.append(f'<text x="{x0 + W - 18}" y="{Y(v) - 3}" text-anchor="end" fill="gray">{name}</text>')
        for v, label in (("dp", "DP-SGD"), ("ra", "DP-SGD + Re-Attention")):
            line = []
            for e, xs in pts[v]:
                dx = -3 if v == "dp" else 3
                m = statistics.mean(xs)
                line.append(f"{X(e) + dx},{Y(m)}")
                out.append(f'<line x1="{X(e) + dx}" y1="{Y(min(xs))}" x2="{X(e) + dx}" y2="{Y(max(xs))}" '
                           f'stroke="{colors[v]}"/>')
                out.append(f'<circle cx="{X(e) + dx}" cy="{Y(m)}" r="3" fill="{colors[v]}"/>')
            if line:
                out.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="{colors[v]}"/>')
            ly = H + 26 if v == "dp" else H + 38
            out.append(f'<line x1="{x0 + pad}" y1="{ly - 4}" x2="{x0 + pad + 16}" y2="{ly - 4}" stroke="{colors[v]}"/>')
            out.append(f'<text x="{x0 + pad + 20}" y="{ly}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"\nplot: {path}")


if plot_path:
    svg_plot(plot_path)

"""What a person looks at: score histograms with the threshold, the ROC curve, a nearest-neighbour
sheet, a per-query CSV, and an HTML page that gathers them with the numbers."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from coinmatch.evaluation import metrics  # noqa: E402
from coinmatch.evaluation.run import Evaluation  # noqa: E402
from coinmatch.images import load_rgb  # noqa: E402


def write_csv(ev: Evaluation, path: Path, top: int = 5) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "true_id", "rank", "true_score", "best_other_score", "top_ids", "top_scores",
                    "top_inliers", "warnings"])
        for o in ev.outcomes:
            w.writerow([o.query.name, o.query.true_id, o.rank, f"{o.positive:.4f}", f"{o.negative:.4f}",
                        ";".join(m.id for m in o.top[:top]), ";".join(f"{m.score:.4f}" for m in o.top[:top]),
                        ";".join("" if m.inliers is None else str(m.inliers) for m in o.top[:top]),
                        " | ".join(o.warnings)])


def plot_histograms(ev: Evaluation, threshold: float | None, path: Path, title: str = "") -> None:
    pos = np.array([o.positive for o in ev.with_match])
    neg = np.array([o.negative for o in ev.outcomes])
    fig, ax = plt.subplots(figsize=(7, 4))
    lo, hi = float(min(pos.min(), neg.min())), float(max(pos.max(), neg.max()))
    bins = np.linspace(lo, hi, 40)
    ax.hist(neg, bins=bins, alpha=0.6, color="tab:red", label=f"best other coin (n={len(neg)})")
    ax.hist(pos, bins=bins, alpha=0.6, color="tab:green", label=f"true coin (n={len(pos)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("verified score" if ev.verified else "cosine similarity")
    ax.set_ylabel("queries")
    ax.set_title(title or "Scores of the true coin and of the best other coin")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(ev: Evaluation, path: Path, title: str = "") -> None:
    pos = np.array([o.positive for o in ev.with_match])
    neg = np.array([o.negative for o in ev.outcomes])
    roc = metrics.open_set(pos, neg)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"AUC {roc['roc_auc']:.3f}, TPR@1%FPR {roc['tpr@fpr=0.01']:.2f}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    ax.axvline(0.01, color="k", ls="--", lw=0.8)
    ax.set_xlabel("false-positive rate (a different coin accepted)")
    ax.set_ylabel("true-positive rate (the coin found and accepted)")
    ax.set_title(title or "Open set: is the coin in the catalogue at all?")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_neighbours(ev: Evaluation, catalogue_root: Path, path: Path, n: int = 8, k: int = 5, seed: int = 0) -> None:
    """Query, then its top k with scores; the true coin outlined in green, a wrong top-1 in red."""
    rng = np.random.default_rng(seed)
    chosen = [ev.outcomes[i] for i in sorted(rng.choice(len(ev.outcomes), min(n, len(ev.outcomes)), replace=False))]
    fig, axes = plt.subplots(len(chosen), k + 1, figsize=(1.9 * (k + 1), 2.1 * len(chosen)), squeeze=False)
    for row, o in zip(axes, chosen):
        row[0].imshow(o.crop if o.crop is not None else load_rgb(o.query.path))
        row[0].set_title(f"query\n{o.query.true_id}"[:40], fontsize=7)
        for j, ax in enumerate(row[1:]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(o.top):
                ax.axis("off")
                continue
            m = o.top[j]
            thumb = catalogue_root / m.thumb if m.thumb else None
            if thumb and thumb.is_file():
                ax.imshow(load_rgb(thumb))
            label = f"{m.id}\n{m.score:.3f}" + (f" / {m.inliers} inl." if m.inliers is not None else "")
            ax.set_title(label[:40], fontsize=7)
            colour = "limegreen" if m.id == o.query.true_id else ("red" if j == 0 else None)
            if colour:
                for spine in ax.spines.values():
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(4)
        row[0].set_xticks([])
        row[0].set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def write_report(ev: Evaluation, summary: dict, catalogue_root: Path, out_dir: Path, title: str = "") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(ev, out_dir / "queries.csv")
    plot_histograms(ev, summary.get("threshold"), out_dir / "histograms.png")
    plot_roc(ev, out_dir / "roc.png")
    plot_neighbours(ev, catalogue_root, out_dir / "neighbours.png")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v:.4f}</td></tr>" if isinstance(v, float)
                   else f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    misses = [o for o in ev.with_match if o.rank != 1]
    miss_rows = "".join(
        f"<tr><td>{html.escape(o.query.name)}</td><td>{html.escape(o.query.true_id)}</td><td>{o.rank or '&gt;100'}"
        f"</td><td>{html.escape(o.top[0].id if o.top else '')}</td><td>{html.escape('; '.join(o.warnings))}</td></tr>"
        for o in misses)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>coinmatch evaluation</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title or 'coinmatch evaluation')}</h1>
<p>Catalogue: {html.escape(str(catalogue_root))}. A query is a hit when the entry ranked first is its coin.
The open-set scores compare each query's true coin with the best other coin (leave-one-out).</p>
<table>{rows}</table>
<h2>Scores</h2><img src="histograms.png" alt="score histograms"><img src="roc.png" alt="ROC curve">
<h2>Nearest neighbours</h2><p>Green: the true coin. Red: a wrong first answer.</p>
<img src="neighbours.png" alt="nearest neighbours">
<h2>Queries not ranked first ({len(misses)})</h2>
<table><tr><th>query</th><th>true id</th><th>rank</th><th>ranked first</th><th>warnings</th></tr>{miss_rows}</table>
<p>Every query: <a href="queries.csv">queries.csv</a>; figures: <a href="summary.json">summary.json</a>.</p>
</body></html>"""
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    return out_dir / "index.html"

"""A training run's record: history.csv, and the plots a person watches (curves.png, histograms.png)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def write_history(history: list[dict], work: Path) -> None:
    with open(work / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[-1]))
        w.writeheader()
        w.writerows(history)


VALIDATION_LABELS = {"val_roc_auc": "held-out ROC AUC", "val_precision_at_1": "held-out precision@1",
                     "val_map_at_r": "held-out MAP@R", "real_recall_at_1": "real pairs recall@1"}


def plot(history: list[dict], last_val: dict, work: Path, closed_form: bool = False) -> None:
    """curves.png (loss, mean similarities, validation scores by epoch) and histograms.png (the last epoch's
    similarities of augmented and unmatched held-out pairs). A ``closed_form`` fit (whitening) has no loss and no
    epochs: the panels say so and show its rows (before and after the fit) as bars, not lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    scores = [k for k in VALIDATION_LABELS if k in history[-1]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].set_title("training loss")
    axes[1].set_title("mean cosine similarity (held-out coins)")
    axes[2].set_title("validation")
    if closed_form:  # one fit, no epochs: the loss panel says so, the others show the values as bars
        axes[0].text(0.5, 0.5, "no training loss:\nfitted in closed form", ha="center", va="center", fontsize=12,
                     transform=axes[0].transAxes)
        axes[0].set_xticks([])
        axes[0].set_yticks([])
        names = {0: "before (the network it was fitted on)", 1: "fitted"}
        width = 0.8 / len(history)
        for ax, keys, labels in (
                (axes[1], ["val_pos_sim", "val_neg_sim"], ["augmented pairs\n(same coin)", "unmatched pairs"]),
                (axes[2], scores, [VALIDATION_LABELS[k].replace(" ", "\n", 1) for k in scores])):
            for i, h in enumerate(history):
                bars = ax.bar(np.arange(len(keys)) + (i - (len(history) - 1) / 2) * width, [h[k] for k in keys],
                              width, label=names.get(h["epoch"], f"epoch {h['epoch']}"))
                ax.bar_label(bars, fmt="%.3f", fontsize=8)
            ax.set_xticks(np.arange(len(keys)), labels)
            lowest = min(h[k] for h in history for k in keys)
            ax.set_ylim(0.0 if lowest >= 0 else lowest - 0.1, 1.3)  # room for a negative bar's label
            ax.legend(loc="upper center", ncol=len(history), fontsize=8)
    else:
        axes[0].plot(ep, [np.nan if h["loss"] is None else h["loss"] for h in history], marker="o")  # epoch 0: none
        axes[1].plot(ep, [h["val_pos_sim"] for h in history], marker="o", label="augmented pairs (same coin)")
        axes[1].plot(ep, [h["val_neg_sim"] for h in history], marker="s", label="unmatched pairs")
        for key, marker in zip(scores, "o^sD"):
            axes[2].plot(ep, [h[key] for h in history], marker=marker, label=VALIDATION_LABELS[key])
        axes[2].set_ylim(-0.02, 1.02)  # every score lies in [0, 1]
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.set_xlim(min(ep) - 0.2, max(ep) + 0.2)  # the loss starts at epoch 1, the scores at 0: one axis
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes[1:]:
            ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(work / "curves.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(-1, 1, 60)
    ax.hist(last_val["_neg"], bins=bins, alpha=0.6, color="tab:red", label="unmatched pairs")
    ax.hist(last_val["_pos"], bins=bins, alpha=0.6, color="tab:green", label="augmented pairs (same coin)")
    ax.set_xlabel("cosine similarity")
    ax.set_title("held-out coins, " + ("the fitted model" if closed_form else f"epoch {ep[-1]}"))
    ax.legend()
    fig.tight_layout()
    fig.savefig(work / "histograms.png", dpi=100)
    plt.close(fig)

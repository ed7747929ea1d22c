"""Pure functions from ranks and scores to the figures a provenance researcher needs."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose true coin is within the first k (ranks are 1-based; 0 = not found)."""
    ranks = np.asarray(ranks)
    return float(np.mean((ranks >= 1) & (ranks <= k))) if len(ranks) else 0.0


def mean_average_precision(ranks: np.ndarray) -> float:
    """mAP with one relevant entry per query: the mean of 1/rank (0 when the coin was not retrieved)."""
    ranks = np.asarray(ranks, dtype=float)
    return float(np.mean(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0))) if len(ranks) else 0.0


def median_rank(ranks: np.ndarray, not_found: int) -> float:
    ranks = np.asarray(ranks, dtype=float)
    return float(np.median(np.where(ranks > 0, ranks, not_found))) if len(ranks) else float("nan")


def open_set(positives: np.ndarray, negatives: np.ndarray) -> dict:
    """ROC of true-match scores against best-non-match scores."""
    pos, neg = np.asarray(positives, float), np.asarray(negatives, float)
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if len(pos) == 0 or len(neg) == 0:
        return {"roc_auc": float("nan"), "tpr@fpr=0.01": float("nan"), "eer": float("nan"),
                "fpr": [], "tpr": [], "thresholds": []}
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    s = np.r_[pos, neg]
    fpr, tpr, thr = roc_curve(y, s)
    eer_i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "tpr@fpr=0.01": tpr_at_fpr(pos, neg, 0.01),
        "eer": float((fpr[eer_i] + 1 - tpr[eer_i]) / 2),
        "fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist(),
    }


def threshold_for_fpr(negatives: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold at which at most ``target_fpr`` of the non-matches score >= it."""
    neg = np.sort(np.asarray(negatives, float))[::-1]
    allowed = int(np.floor(target_fpr * len(neg)))  # how many negatives may pass
    if allowed >= len(neg):
        return float(neg[-1])
    return float(np.nextafter(neg[allowed], np.inf))


def tpr_at_fpr(positives: np.ndarray, negatives: np.ndarray, target_fpr: float) -> float:
    t = threshold_for_fpr(negatives, target_fpr)
    return float(np.mean(np.asarray(positives) >= t))


def bootstrap_interval(values: np.ndarray, level: float = 0.95, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one value per query, or a row per query that is
    averaged first: its results over several draws of the query form, say), the queries drawn with replacement.
    For two methods on the same queries, pass the per-query differences: the interval of the paired difference."""
    v = np.asarray(values, dtype=float)
    v = v.reshape(len(v), -1).mean(axis=1)
    if len(v) == 0:
        return float("nan"), float("nan")
    means = v[np.random.default_rng(seed).integers(0, len(v), size=(draws, len(v)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))

"""Comparing two coins angle by angle: the score that search gives its shortlist and compare its pair.

A model of several angles gives, beside its pooled vector, one vector per angle (A x d, in angle order). The
pooled vector forgets where a coin's features lie around it; the angle vectors keep it. Two coins are compared
turned to their best relative orientation (:func:`cyclic_similarity`), and that aligned cosine is averaged with
the pooled cosine (:func:`aligned_score`).
"""

from __future__ import annotations

import numpy as np


def cyclic_similarity(queries: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """Q x C from angle vectors (Q x A x d against C x A x d, unit rows): the best, over the A cyclic shifts of
    the angles, of the mean cosine of the angles; each coin compared turned to its best orientation."""
    angles = queries.shape[1]
    flat = entries.reshape(len(entries), -1).astype(np.float32, copy=False).T  # one matrix product a shift (BLAS)
    best = np.full((len(queries), len(entries)), -np.inf)
    for k in range(angles):
        turned = np.roll(queries, -k, axis=1).reshape(len(queries), -1).astype(np.float32, copy=False)
        np.maximum(best, (turned @ flat) / angles, out=best)
    return best


def aligned_score(cosine: float, aligned: float) -> float:
    """The embedding's score of a pair with angle vectors: the mean of its pooled and its aligned cosine."""
    return (cosine + aligned) / 2


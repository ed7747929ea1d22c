"""Real positive pairs mined from the training photos: the same coin photographed more than once.

Training sets are meant to hold one photo per coin, but real ones repeat coins: the euro singles
(kaa/coins-dataset) show many coins in several pile photos, under other light and at other angles.
Such a pair is a real second photograph, the very variation that augmentation only imitates, and
treating its two photos as two coins would teach the model to tell a coin from itself.

Each photo is compared with its ``shortlist`` nearest photos by the untrained descriptor (of the same
type, when the manifest has a type column), and the pair is checked by verification (verify.py:
RootSIFT matches under a rotation-and-scale fit about the coin's centre). Pairs with ``min_inliers``
inliers or more are kept. On the euro real pairs (a study now in git history), 78 of 84 true pairs
reach 60 inliers (82 reach 30) and 2 of 6,972 wrong pairs do, both between two coins whose stains
match (likely the same coin, shown in two layouts); different coins of one design rarely do.

``coinmatch mine-pairs`` writes what it finds in a manifest as a CSV of pairs: the photos a collection
holds of one coin twice, to check, and a set of real photo pairs for ``train --val-pairs``.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from coinmatch import verify
from coinmatch.files import replaced

log = logging.getLogger(__name__)

MIN_INLIERS = 60
SHORTLIST = 20


@dataclass
class MinedPairs:
    pairs: np.ndarray  # K x 2 int: indices of two photos of one coin, first < second
    inliers: np.ndarray  # K int: the verification's evidence for each
    seconds: float


def shortlists(descriptors: np.ndarray, types: np.ndarray | None, k: int) -> np.ndarray:
    """N x min(k, N-1): for each photo, the others nearest by cosine, never itself, never another type."""
    v = descriptors / np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    if types is not None:
        t = np.asarray(types)
        known = t >= 0
        sims[known[:, None] & known[None, :] & (t[:, None] != t[None, :])] = -np.inf
    k = min(k, len(v) - 1)
    return np.argsort(-sims, axis=1)[:, :k] if k > 0 else np.zeros((len(v), 0), int)


def mine_pairs(crops: np.ndarray | list[np.ndarray], descriptors: np.ndarray, types: np.ndarray | None = None,
               shortlist: int = SHORTLIST, min_inliers: int = MIN_INLIERS, progress: bool = True,
               seed: int = 0) -> MinedPairs:
    """Pairs of photos that show one coin, among coin-centred square ``crops`` (see the module's notes).

    Each pair is verified once, however many of its two shortlists hold it. Verification draws at random
    (RANSAC), so OpenCV's generator is seeded with ``seed`` first: the same photos give the same pairs."""
    if len(crops) != len(descriptors):
        raise ValueError(f"{len(crops)} crops but {len(descriptors)} descriptors")
    t = time.perf_counter()
    cv2.setRNGSeed(seed)
    near = shortlists(descriptors, types, shortlist)
    feats = [verify.extract(c) for c in tqdm(crops, desc="mining pairs: features", unit="img", disable=not progress)]
    checked: set[tuple[int, int]] = set()
    found: dict[tuple[int, int], int] = {}
    for i in tqdm(range(len(feats)), desc="mining pairs: verifying", unit="img", disable=not progress):
        cands = [int(j) for j in near[i] if (min(i, j), max(i, j)) not in checked]
        checked.update((min(i, j), max(i, j)) for j in cands)
        for j, v in zip(cands, verify.match_many(feats[i], [feats[j] for j in cands])):
            if v.inliers >= min_inliers:
                found[(min(i, j), max(i, j))] = v.inliers
    pairs = np.array(sorted(found), dtype=np.int64).reshape(-1, 2)
    inliers = np.array([found[tuple(p)] for p in pairs.tolist()], dtype=np.int64)
    seconds = time.perf_counter() - t
    log.info("mined %d same-coin pairs among %d photos in %.0f s", len(pairs), len(feats), seconds)
    return MinedPairs(pairs, inliers, seconds)


def mine_manifest(manifest: str | Path, out: str | Path, type_column: str | None = None, model: str | None = None,
                  shortlist: int = SHORTLIST, min_inliers: int = MIN_INLIERS, progress: bool = True) -> MinedPairs:
    """Mine a manifest's photos and write the pairs as a CSV (``image``, ``coin_id``, ``inliers``; two rows a
    pair, image paths relative to the CSV's folder), which ``train --val-pairs`` reads as real photo pairs.
    ``model``: the model file whose descriptor shortlists the candidates (default: coinmatch's default)."""
    from coinmatch.models.runtime import Embedder
    from coinmatch.training.cache import cache_size, load_cache

    cache = load_cache(manifest, cache_size(224), type_column, progress=progress)
    embedder = Embedder(model)
    mined = mine_pairs(cache.images, embedder.embed(cache.plain(embedder.size), progress=progress),
                       cache.types, shortlist, min_inliers, progress)
    out = Path(out)
    base = Path(manifest).resolve().parent  # read_manifest's rule: relative to the manifest's folder
    paths = [base / n for n in cache.names]  # (and ``base / n`` keeps an absolute n as it is)
    # a finished file or none: an earlier CSV is not half overwritten
    with replaced(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "coin_id", "inliers"])
        width = len(str(len(mined.pairs)))
        for k, ((a, b), n) in enumerate(zip(mined.pairs.tolist(), mined.inliers.tolist())):
            for i in (a, b):
                w.writerow([os.path.relpath(paths[i], out.resolve().parent), f"pair-{k + 1:0{width}d}", n])
    return mined

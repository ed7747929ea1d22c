"""Fitting to the catalogue at hand: its own coins in the whitening's fit, and hub scores taken out.

    .venv/bin/python benchmarks/catalogue_fit.py [--image-size 224] [--limit 2000] [--train 1300]
        [--reuse] [--name catalogue-fit]

A user's catalogue is known before any query comes, and its coins are seldom the training set's types
(the euro pairs' 10 cent and 1 euro coins are not among the training photos). Two ways to use it, on the
descriptors of benchmarks/rings.py (grey ImageNet Lite0, 16 angles, whole map + three rings, the
`--rings --whitening-views 2` recipe's fit):
- whitening fitted on the training coins' augmented pairs and on two augmented views of every catalogue
  entry too (weight 1 or 2: the catalogue's pairs once or twice), or on the catalogue's pairs alone;
- hubness: a catalogue entry that is close to many others (a worn coin, a washed-out photo) attracts
  queries that are not its own. Each similarity less half the entry's mean similarity to its k nearest
  other entries (CSLS, Conneau et al. 2018, with the catalogue standing in for the queries), or to its k
  nearest training photos (val P@1 is not defined there: nan).
Scored as the other studies (benchmarks/common.py). The catalogue's views are made with seed 7 and kept
in out/benchmarks/ (``--reuse``).
"""

from __future__ import annotations

import cv2
import numpy as np

from common import SCORE_COLUMNS, WORK, euro_crops, format_table, save_results, stored_descriptors, study_arguments, unit
from coinmatch.training.augment import augment
from coinmatch.training.cache import cache_size
from coinmatch.training.whitening import learned_whitening
from rings import VARIANTS, extract, ring_embedder, scores, variant

VIEWS = 2  # the recipe's augmented views per training coin, and per catalogue entry here


def catalogue_views(size: int) -> dict[str, np.ndarray]:
    """Two augmented views of every catalogue entry, made as the training cache makes them (the crop resized
    to the cache's side, then augmented to ``size``), view-major."""
    _, crops, _ = euro_crops()
    side = cache_size(size)
    small = [cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in crops]
    rng = np.random.default_rng(7)
    return {"cat_views": ring_embedder(size)([augment(im, rng, size) for _ in range(VIEWS) for im in small],
                                             "catalogue views")}


def fitted(v: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    p, m = learned_whitening(x, y, 512, 0.1)
    return {k: unit((a - m) @ p.T) for k, a in v.items()}


def hub_corrected(w: dict[str, np.ndarray], d: dict[str, np.ndarray], reference: np.ndarray | None,
                  k: int) -> dict[str, float]:
    """Recall@1 with each similarity less half the entry's mean similarity to its k nearest in ``reference``
    (None: the other catalogue entries)."""
    cat = w["cat"]
    near = cat @ (cat if reference is None else reference).T
    if reference is None:
        np.fill_diagonal(near, -np.inf)
    hub = np.sort(near, axis=1)[:, -k:].mean(axis=1)
    row = {"val P@1": float("nan")}
    for form in ("photo", "catalogue-like"):
        s = w["q:" + form] @ cat.T - 0.5 * hub[None, :]
        row[form] = float(np.mean(d["cat_ids"][s.argmax(1)] == d["q_ids"]))
    return row


def study(d: dict[str, np.ndarray], c: dict[str, np.ndarray]) -> list[dict]:
    make = VARIANTS["whole + rings (--rings)"]
    v = variant(d, make)
    views = variant(c, make)["cat_views"]
    x, y = np.tile(v["x"], (VIEWS, 1)), v["y"][: VIEWS * len(v["x"])]
    cat = np.tile(v["cat"], (VIEWS, 1))
    base = fitted(v, x, y)
    rows = [{"method": "training coins only (the recipe)", **scores(base, d)}]
    for weight in (1, 2):
        w = fitted(v, np.concatenate([x] + [cat] * weight), np.concatenate([y] + [views] * weight))
        rows.append({"method": f"+ the catalogue's own views, weight {weight}", **scores(w, d)})
    rows.append({"method": "the catalogue's own views alone", **scores(fitted(v, cat, views), d)})
    for k in (3, 10, 30):
        rows.append({"method": f"hubness: less the {k} nearest entries", **hub_corrected(base, d, None, k)})
        rows.append({"method": f"hubness: less the {k} nearest training photos",
                     **hub_corrected(base, d, base["x"], k)})
    return rows


def main() -> None:
    ap = study_arguments(__doc__.splitlines()[0], "catalogue-fit")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    d, how = stored_descriptors(WORK / f"rings-area-{args.image_size}-{args.limit}-{args.train}-{VIEWS}.npz",
                                args.reuse, lambda: extract(args.image_size, args.limit, args.train, VIEWS))
    c, how_c = stored_descriptors(WORK / f"catalogue-views-{args.image_size}-{VIEWS}.npz", args.reuse,
                                  lambda: catalogue_views(args.image_size))
    print(f"ring descriptors {how}; catalogue views {how_c}", flush=True)
    rows = study(d, c)
    text = format_table(rows, [("method", "method", "<46"), *SCORE_COLUMNS])
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

"""A second real same-coin test: the pairs that `coinmatch mine-pairs` finds among the euro singles.

    .venv/bin/python benchmarks/singles_pairs.py [--models default runs/*.cm ...] [--name singles-pairs]

The singles (1c, 2c, 2 euro and 50c crops of about 150 px, cut from the owner's pile photos) hold many
coins more than once, photographed on other days, under other light, on other cloths. `mine-pairs`
(60+ verification inliers; see benchmarks/mined_pairs.py for how safe that is) finds them. The pairs
chain into groups of photos of one coin; each group gives one pair (sets()). Catalogue: the first photo of each
pair and every single that shows none of the queries' coins; queries: the second photos, as photographed and catalogue-like (grey, random angle, 128 px, seed
0). Scored as search scores them: coin found and cropped, embedded, cosine.

Caveats, both in the results file: the pairs were found by verification, so verification would find
them all again (it is not scored here), and they are the pairs it can match, likely easier than the
rest. A model trained on the singles has seen these photos (as single coins; with --mine-pairs, as
the very pairs), so only models trained without them are a fair test.
"""

from __future__ import annotations

import argparse
import csv
import glob
import time
from pathlib import Path

import numpy as np

from common import EURO, ROOT, WORK, format_table, save_results, search_crop, untrained_invariant_model
from coinmatch.evaluation.protocol import catalogue_like
from coinmatch.images import load_rgb
from coinmatch.models.runtime import Embedder
from coinmatch.training.mining import mine_manifest


def read_pairs(csv_path: Path) -> list[tuple[str, str]]:
    """The pairs of a pairs CSV (two rows a ``coin_id``, image paths relative to the CSV's folder: what `coinmatch
    mine-pairs` writes, and the euro pairs' manifest), in the file's order, as absolute paths."""
    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_coin: dict[str, list[str]] = {}
    for r in rows:
        by_coin.setdefault(r["coin_id"], []).append(str((csv_path.parent / r["image"]).resolve()))
    return [(a, b) for a, b in by_coin.values()]


def sets(pairs_csv: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Catalogue photos, query photos, and for each query the index of its coin's catalogue photo.

    The owner photographed many coins more than twice, so the mined pairs chain into groups of photos of one coin
    (2 to 16 photos). Each group gives one query and one catalogue photo (its first mined pair) and its other photos
    leave the catalogue: left in, they are the same coin as the query and yet counted against it (before stop 28
    they were, and most of the test's misses were such photos ranked first)."""
    pairs = read_pairs(pairs_csv)
    group: dict[str, str] = {}  # union-find over the mined pairs: photo -> a photo of its coin

    def root(p: str) -> str:
        while group.setdefault(p, p) != p:
            p = group[p]
        return p

    for a, b in pairs:
        group[root(a)] = root(b)
    chosen: dict[str, tuple[str, str]] = {}
    for a, b in pairs:  # mining's order: the first pair of each coin
        chosen.setdefault(root(a), (a, b))
    with open(EURO / "singles.csv", encoding="utf-8") as f:
        singles = [str((EURO / r["image"]).resolve()) for r in csv.DictReader(f)]
    disjoint = list(chosen.values())
    queries = [b for _, b in disjoint]
    is_query = set(queries)
    entries = {a for a, _ in disjoint}
    same_coin = {p for p in group if p not in entries}  # the groups' photos besides the entries
    cat = [p for p in singles if p not in is_query and p not in same_coin]
    return cat, queries, np.array([cat.index(a) for a, _ in disjoint])


def real_test(crop=search_crop) -> tuple[int, list[np.ndarray], dict[str, list[np.ndarray]], np.ndarray]:
    """The test as scored here: the pairs mined among the singles (how many), the catalogue's coin crops, the query
    photos as photographed and catalogue-like (seed 0), and for each query its coin's catalogue index.
    ``crop``: RGB photo -> coin crop for the catalogue (default: search's)."""
    WORK.mkdir(parents=True, exist_ok=True)
    pairs_csv = WORK / "singles-pairs.csv"
    mined = mine_manifest(EURO / "singles.csv", pairs_csv, "denomination", progress=False)
    cat, queries, truth = sets(pairs_csv)
    rng = np.random.default_rng(0)
    photos = [load_rgb(q) for q in queries]
    forms = {"photo": photos, "catalogue-like": [catalogue_like(im, rng) for im in photos]}
    return len(mined.pairs), [crop(load_rgb(p)) for p in cat], forms, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None,
                    help="model files, or 'default' (default: default, the untrained grey 16-angle network, "
                         "and runs/*.cm)")
    ap.add_argument("--name", default="singles-pairs", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    n_pairs, cat_crops, forms, truth = real_test()
    print(f"{n_pairs} pairs mined; {len(truth)} queries (one pair per coin), {len(cat_crops)} catalogue "
          "entries", flush=True)
    models = args.models
    if models is None:
        models = ["default", str(untrained_invariant_model())] + sorted(glob.glob(str(ROOT / "runs" / "*.cm")))
    rows = []
    for m in models:
        embedder = Embedder(None if m == "default" else m)
        c = embedder.embed(cat_crops)
        for form, images in forms.items():
            t = time.perf_counter()
            q = embedder.embed([search_crop(im) for im in images])
            sims = q @ c.T
            ranks = 1 + np.sum(sims > sims[np.arange(len(truth)), truth][:, None], axis=1)  # the true one's own cell
            rows.append({"model": m.split("/")[-1], "form": form, "recall@1": float(np.mean(ranks == 1)),
                         "recall@5": float(np.mean(ranks <= 5)),
                         "ms_per_query": 1000 * (time.perf_counter() - t) / len(images)})
            print(rows[-1], flush=True)
    text = format_table(rows, [("model", "model", "<40"), ("form", "form", "<15"), ("recall@1", "R@1", "6.3f"),
                               ("recall@5", "R@5", "6.3f"), ("ms_per_query", "ms/q", "7.1f")])
    text = (f"{len(truth)} queries, {len(cat_crops)} catalogue entries; pairs found by verification (all of them "
            "verifiable); models trained on the singles have seen these photos\n" + text)
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

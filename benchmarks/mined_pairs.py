"""Same-coin photo pairs mined by verification (`--mine-pairs`): how safe the threshold is, and what it finds.

    .venv/bin/python benchmarks/mined_pairs.py [--name mined-pairs]      (about 3 min on 2 cores)

1. The threshold, on the euro real pairs, whose labels come from the shots' geometry, not from appearance:
   every `_b` photo verified against every `_a` photo (84 true pairs, 6,972 wrong ones of the same two
   denominations); how many of each reach 30, 60 and 100 inliers.
2. The euro singles (training data: 1c, 2c, 2 euro, 50c), one row per photo crop, which repeat coins
   across the owner's pile photos: every pair of crops of one denomination from two different photos
   verified (the pairs that reach the threshold are the reference), against what `mine_pairs` finds from
   each crop's 20 nearest by the untrained descriptor, as the training does.
"""

from __future__ import annotations

import argparse
import csv
import time

import cv2
import numpy as np

from common import EURO, format_table, save_results
from coinmatch import verify
from coinmatch.models.modelfile import ModelConfig, build_network
from coinmatch.prepare import prepare_photo
from coinmatch.training.cache import cache_size, load_cache
from coinmatch.training.mining import MIN_INLIERS, SHORTLIST, mine_pairs
from coinmatch.training.whitening import descriptor_embedder

THRESHOLDS = (30, MIN_INLIERS, 100)


def calibration() -> list[dict]:
    with open(EURO / "pairs.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    shots = {}
    for r in rows:
        shots.setdefault(r["coin_id"], {})["a" if r["image"].endswith("_a.jpg") else "b"] = r["image"]
    ids = sorted(shots)
    fa = [verify.extract(prepare_photo(EURO / shots[i]["a"]).crop) for i in ids]
    fb = [verify.extract(prepare_photo(EURO / shots[i]["b"]).crop) for i in ids]
    m = np.array([[v.inliers for v in verify.match_many(q, fa)] for q in fb])
    true = np.diag(m)
    wrong = m[~np.eye(len(m), dtype=bool)]
    return [{"set": "euro pairs, every _b against every _a", "inliers": f">= {t}",
             "pairs": f"true pairs {int((true >= t).sum())} of {len(true)}; "
                      f"other pairs {int((wrong >= t).sum())} of {len(wrong)}"} for t in THRESHOLDS]


def singles() -> list[dict]:
    cache = load_cache(EURO / "singles.csv", cache_size(224), "denomination", progress=False)
    with open(EURO / "singles.csv", encoding="utf-8") as f:
        photo_of = {r["image"]: r["source_photo"] for r in csv.DictReader(f)}
    photos = np.array([photo_of[n.split("euro-coins/")[-1]] for n in cache.names])
    t = time.perf_counter()
    feats = [verify.extract(im) for im in cache.images]
    n = len(cache)
    m = np.zeros((n, n), int)
    for i in range(n):
        js = [j for j in range(i + 1, n) if cache.types[j] == cache.types[i] and photos[j] != photos[i]]
        for j, v in zip(js, verify.match_many(feats[i], [feats[j] for j in js])):
            m[i, j] = v.inliers
    every_seconds = time.perf_counter() - t
    config = ModelConfig(grey=True, rotations=16, image_size=224, rings=True)  # the runs' untrained descriptor
    descriptors = descriptor_embedder(build_network(config), config, "cpu").embed(cache.plain(224))
    mined = mine_pairs(cache.images, descriptors, cache.types, progress=False)
    got = {tuple(p) for p in mined.pairs.tolist()}
    out = []
    for thr in THRESHOLDS:
        ref = {(int(i), int(j)) for i, j in zip(*np.nonzero(m >= thr))}
        out.append({"set": f"euro singles ({n} crops), every pair", "inliers": f">= {thr}",
                    "pairs": f"{len(ref)} ({every_seconds:.0f} s)"})
        if thr == MIN_INLIERS:
            out.append({"set": f"euro singles, mine_pairs ({SHORTLIST} nearest)", "inliers": f">= {thr}",
                        "pairs": f"{len(got)}, of which {len(got & ref)} in the row above ({mined.seconds:.0f} s)"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="mined-pairs", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    cv2.setRNGSeed(0)  # verification's RANSAC draws at random: counts at the threshold would change run to run
    rows = calibration() + singles()
    text = format_table(rows, [("set", "set", "<40"), ("inliers", "inliers", "<8"), ("pairs", "pairs", "<50")])
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

"""How well the coin finder's circles agree between two real photos of the same coin, with and without refining.

    .venv/bin/python benchmarks/finder_pairs.py [--name finder-pairs]

benchmarks/finder.py's steadiness turns, greys and shrinks one photo; this asks the same of two real photos of one
coin, under other light, from another camera position, on another background. For each pair the affine map from
the first photo to the second is fitted by RANSAC to RootSIFT matches on the coin (coinmatch.evaluation.circles;
features within 1.15 radii of every compared finder's circle, so that the map favours none). The circle found in
the first photo, carried by the map, is compared with the circle found in the second: the centre's distance and
the radius's ratio, in radii. Pairs: the 84 labelled euro pairs, and the euro singles' pairs that `coinmatch
mine-pairs` finds with either finder (each finder's crops mined under a cache folder of its own, since the
training cache's key does not know a setting changed in this process; the union, so that neither finder picks
the pairs). The singles are 150 px crops from pile photos, some squeezed a little, so their map is less exact.
About 3 minutes on 2 cores once the singles are mined (mining: 1-2 minutes a finder).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from common import EURO, WORK, format_table, save_results
from refined_finder import FINDERS
from singles_pairs import read_pairs
from coinmatch import segment
from coinmatch.evaluation.circles import disagreement, photo_map
from coinmatch.images import load_rgb
from coinmatch.training.mining import mine_manifest

CACHES = {"Hough's circle": WORK / "refined-finder-cache", "refined": WORK / "finder-pairs-cache"}
THRESHOLDS = (0.02, 0.03, 0.05, 0.10)


def singles_pairs() -> list[tuple[str, str]]:
    """The singles' same-coin pairs mined with either finder (each under its own cache folder)."""
    kept = os.environ.get("COINMATCH_CACHE"), segment.REFINE_PASSES
    found: set[tuple[str, str]] = set()
    try:
        for name, passes in FINDERS.items():
            segment.REFINE_PASSES = passes
            os.environ["COINMATCH_CACHE"] = str(CACHES[name])
            out = WORK / f"finder-pairs-singles-{'hough' if not passes else 'refined'}.csv"
            mined = mine_manifest(EURO / "singles.csv", out, "denomination", progress=False)
            print(f"singles mined with {name}: {len(mined.pairs)} pairs", flush=True)
            found |= {tuple(sorted(p)) for p in read_pairs(out)}
    finally:
        segment.REFINE_PASSES = kept[1]
        if kept[0] is None:
            os.environ.pop("COINMATCH_CACHE", None)
        else:
            os.environ["COINMATCH_CACHE"] = kept[0]
    return sorted(found)


def euro_pairs() -> list[tuple[str, str]]:
    return [tuple(sorted(p)) for p in read_pairs(EURO / "pairs.csv")]


def circles_of(rgb: np.ndarray) -> dict[str, segment.Circle]:
    kept = segment.REFINE_PASSES
    try:
        out = {}
        for name, passes in FINDERS.items():
            segment.REFINE_PASSES = passes
            out[name] = segment.locate_coin(rgb).circle
        return out
    finally:
        segment.REFINE_PASSES = kept


def study(set_name: str, pairs: list[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    rows, per_pair, unmapped = [], [], 0
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in FINDERS}
    for a, b in pairs:
        pa, pb = load_rgb(a), load_rgb(b)
        ca, cb = circles_of(pa), circles_of(pb)
        m = photo_map(pa, pb, list(ca.values()), list(cb.values()))
        if m is None:
            unmapped += 1
            continue
        pair = {"set": set_name, "a": a, "b": b, "inliers": m.inliers}
        for name in FINDERS:
            d = disagreement(m, ca[name], cb[name])
            found[name].append((d.centre, d.radius))
            pair[name] = {"centre": d.centre, "radius": d.radius}
        per_pair.append(pair)
    for name, values in found.items():
        v = np.array(values).reshape(-1, 2)
        worst = v.max(1)
        rows.append({"set": set_name, "finder": name, "pairs": len(v), "unmapped": unmapped,
                     "centre_median": float(np.median(v[:, 0])), "centre_mean": float(v[:, 0].mean()),
                     "radius_median": float(np.median(v[:, 1])), "radius_mean": float(v[:, 1].mean()),
                     **{f"over_{t:g}": float(np.mean(worst > t)) for t in THRESHOLDS}})
    return rows, per_pair


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="finder-pairs", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    rows, per_pair = [], []
    for set_name, pairs in (("euro pairs", euro_pairs()), ("singles' mined pairs", singles_pairs())):
        r, p = study(set_name, pairs)
        rows += r
        per_pair += p
        print(f"{set_name}: {len(pairs)} pairs", flush=True)
    columns = [("set", "set", "<21"), ("finder", "finder", "<15"), ("pairs", "pairs", ">6"),
               ("unmapped", "no map", ">7"), ("centre_median", "centre med", "11.4f"),
               ("centre_mean", "mean", "7.4f"), ("radius_median", "radius med", "11.4f"),
               ("radius_mean", "mean", "7.4f")] + [(f"over_{t:g}", f"> {100 * t:g} %", "7.2f") for t in THRESHOLDS]
    text = ("the circle found in a pair's first photo, carried into the second by the photos' affine map, against the "
            "circle found there (centre's distance; |log| of the radii's ratio; share of pairs where either is "
            "over the threshold)\n" + format_table(rows, columns))
    print(text)
    save_results(args.name, rows + per_pair, text)


if __name__ == "__main__":
    main()

"""Does the coin finder frame catalogue-like queries worse, and does that cost the embedding its first place?

    .venv/bin/python benchmarks/query_framing.py --model runs/recipe.cm|default [--refine-min R] [--name query-framing]

A catalogue-like query (grey, turned by a random angle, shrunk to 128 px: evaluation.protocol) is the photographed
query under a known map: a turn about the photo's centre, then a scale. So the circle that the finder gives on the
photographed query can be carried into the catalogue-like one exactly, with no matching, and set beside the circle
that the finder gives there itself. On both real same-coin tests, the euro pairs (benchmarks/common.py) and the
euro singles' mined pairs (benchmarks/singles_pairs.py, the same sets and draws), this study reports:
  - how far apart the two circles are: the centre's distance and the |log| of the radii's ratio, in radii
    (coinmatch.evaluation.circles.disagreement, as benchmarks/finder_pairs.py measures real pairs; the worse of the
    two per query), as median, mean and share of queries over 2, 3, 5 and 10 %;
  - the model's recall@1 and @5, open-set ROC AUC and TPR at 1 % FPR (benchmarks/aligned.py's), every entry scored
    by search's score with local density, for the catalogue-like queries framed by the finder (as search frames
    them) and framed by the carried circle (the photographed query's framing, an oracle search does not have),
    with the queries not ranked first and their ranks (of the singles, how many);
  - the same for the photographed queries, for reference.
If the carried framing ranks clearly more queries first, the finder's work on small grey photos costs recall; if
not, the misses lie in the embedding. About 10 minutes on 2 cores, nearly all of it the vectors (ONNX Runtime).

``--refine-min R`` tries, in this process only, a finder that refines a coin of radius under R px on a copy enlarged
so that its radius is R (cubic interpolation): at 128 px a coin's radius is about 55 px, where the refinement's last
box (1.5 % of the radius) is held at its 2 px floor and the rim is sampled a pixel (2 % of the radius) apart. The
catalogue and every query are then found and cropped by that finder; the model is not retrained.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from common import euro_crops, search_crop
from density import catalogue_density
from query_scales import model_arguments, report, row, score
from singles_pairs import real_test
from coinmatch.evaluation.circles import PhotoMap, disagreement
from coinmatch.evaluation.protocol import catalogue_like_angles, catalogue_like_at
from coinmatch.images import load_rgb
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_array
from coinmatch.search import DENSITY_WEIGHT
from coinmatch import segment
from coinmatch.segment import Circle, CoinLocation, crop_coin

THRESHOLDS = (0.02, 0.03, 0.05, 0.1)


def catalogue_like_drawn(photos: list[np.ndarray]) -> tuple[list[np.ndarray], list[PhotoMap]]:
    """The protocol's catalogue-like queries (seed 0, as load_query_images makes them), and for each the map that
    takes the photo to the catalogue-like image (a turn and a uniform scale; ``inliers`` 0: known, not matched)."""
    images, maps = [], []
    for im, angle in zip(photos, catalogue_like_angles(len(photos), seed=0)):
        out = catalogue_like_at(im, angle)
        h, w = im.shape[:2]
        turn = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), [0, 0, 1]])
        maps.append(PhotoMap(resize_map(w, h, out.shape[1], out.shape[0]) @ turn, 0))
        images.append(out)
    return images, maps


def resize_map(w: int, h: int, w2: int, h2: int) -> np.ndarray:
    """The 2 x 3 map of pixel positions that cv2.resize applies from w x h to w2 x h2 (pixel centres kept)."""
    sx, sy = w2 / w, h2 / h
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])


def framings(photos: list[np.ndarray]) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
    """Query crops: photographed (search's), catalogue-like framed by the finder (search's) and by the photo's
    circle carried over; and each catalogue-like query's circle disagreement."""
    images, maps = catalogue_like_drawn(photos)
    crops = {"photo": [], "catalogue-like": [], "catalogue-like, carried": []}
    errors = []
    for photo, im, m in zip(photos, images, maps):
        first, own = prepare_array(photo), prepare_array(im)  # each coin found once, as search finds and crops it
        truth = m.carry(first.location.circle)
        crops["photo"].append(first.crop)
        crops["catalogue-like"].append(own.crop)
        crops["catalogue-like, carried"].append(crop_coin(im, CoinLocation(truth, True, "carried", 1.0), mask=False))
        errors.append(disagreement(m, first.location.circle, own.location.circle).worst)
    return crops, np.array(errors)


def test_sets(test: str) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """A real test's catalogue crops, photographed query photos, each query's catalogue index, and query names."""
    if test == "euro pairs (84)":
        ids, cat, queries = euro_crops()
        true = np.array([np.flatnonzero(ids == q.true_id)[0] for q in queries])
        names = np.array([q.name.rsplit("/", 1)[-1] for q in queries])
        return cat, [load_rgb(q.path) for q in queries], true, names
    _, cat, forms, true = real_test()
    return [search_crop(im) for im in cat], forms["photo"], true, np.array([], dtype=str)


def study(embedder: Embedder, test: str) -> tuple[list[dict], str]:
    cat, photos, true, names = test_sets(test)
    t = time.perf_counter()
    crops, errors = framings(photos)
    spread = (f"{test}: catalogue-like circle against the photo's carried, in radii: median {np.median(errors):.3f}, "
              f"mean {errors.mean():.3f}; share over " + ", ".join(f"{th:g}: {(errors > th).mean():.2f}"
                                                                   for th in THRESHOLDS)
              + f" ({time.perf_counter() - t:.0f} s)")
    print(spread, flush=True)
    d = {"test": test, "true": true, "names": names}
    d["cat:v"], d["cat:a"] = embedder.embed_with_angles(cat)
    density = DENSITY_WEIGHT * catalogue_density(d)[None, :]
    rows = []
    for form, qs in crops.items():
        d[f"{form}:v"], d[f"{form}:a"] = embedder.embed_with_angles(qs)
        r = row(d, form.split(",")[0], "carried from the photo" if "carried" in form else "found (search's)",
                score(d, form, "cat") - density)
        rows.append(r)
    if len(names):
        worst = np.argsort(-errors)[:8]
        spread += "\n  largest disagreements: " + ", ".join(
            f"{names[i].removesuffix('_b.jpg')} {errors[i]:.3f}" for i in worst)
    return rows, spread


def refine_enlarged(min_radius: float):
    """segment's refinement, with a coin of radius under ``min_radius`` px refined on a copy enlarged to that."""
    refine = segment._refine

    def refined(rgb: np.ndarray, c: Circle) -> Circle:
        if c.r >= min_radius:
            return refine(rgb, c)
        h, w = rgb.shape[:2]
        k = min_radius / c.r
        big = cv2.resize(rgb, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
        there = resize_map(w, h, big.shape[1], big.shape[0])
        x, y = there @ np.array([c.x, c.y, 1.0])
        out = refine(big, Circle(float(x), float(y), c.r * there[0, 0]))
        back = resize_map(big.shape[1], big.shape[0], w, h)
        x, y = back @ np.array([out.x, out.y, 1.0])
        return Circle(float(x), float(y), out.r * back[0, 0])
    return refined


def main() -> None:
    ap = model_arguments(__doc__, "query-framing")
    ap.add_argument("--refine-min", type=float, default=0.0,
                    help="refine coins of a smaller radius (px) on an enlarged copy (this process only)")
    args = ap.parse_args()
    if args.refine_min:
        segment._refine = refine_enlarged(args.refine_min)
    embedder = Embedder(None if args.model == "default" else args.model)
    rows, lines = [], []
    for test in ("euro pairs (84)", "singles pairs"):
        r, line = study(embedder, test)
        rows += r
        lines.append(line)
    finder = f"finder: refined{f', coins under {args.refine_min:g} px enlarged to it' if args.refine_min else ''}"
    report(args.name, args.model, rows, method=("framing", 24), lines=(finder, *lines))


if __name__ == "__main__":
    main()

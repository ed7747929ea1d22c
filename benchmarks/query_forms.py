"""Which part of the catalogue-like form costs a model its first places: greyness, turning or shrinking?

    .venv/bin/python benchmarks/query_forms.py --model runs/recipe.cm [--name query-forms]

A catalogue-like query (evaluation.protocol) is the photo turned grey, rotated by a random angle and shrunk to 128
px. This study makes the euro pairs' queries grey, then grey with each other part added, then with all three, at the
protocol's own random angles (seed 0, drawn as the protocol draws them), and scores each set as search does (every
entry: (pooled + aligned cosine) / 2, less half the entry's local density, k = 10). It also turns each query by its
angle rounded to the nearest of the model's own angles (22.5 degrees apart for 16), where the model's rotated views
line up with the turn and only the crop's corners differ: if that costs as much as any angle, the loss is the
corners', not the angles' in between. It reads the catalogue's vectors from benchmarks/query_scales.py's stored file
for the model (made first when missing: about 30 minutes) and embeds the 84 queries once per form (about 20 s each
on 2 cores). The model sees luminance only, yet greyness can still cost through the crop: the coin finder reads
luminance too, but before stop 27 its circle moved with a pixel's rounding (benchmarks/finder.py --change refine),
so it also reports how often, and by how much, the circle it finds on the grey photo differs from the one it finds
on the colour photo.
"""

from __future__ import annotations

import csv

import numpy as np

from common import pairs_manifests, search_crop
from density import catalogue_density
from query_scales import angle_embedder, model_arguments, report, row, score, stored_vectors
from coinmatch.evaluation.protocol import grey, load_query_images, read_queries, rotate, shrink
from coinmatch.search import DENSITY_WEIGHT
from coinmatch.segment import locate_coin

FORMS = {
    "photo": lambda im, a, step: im,
    "grey": lambda im, a, step: grey(im),
    "grey, shrunk": lambda im, a, step: shrink(grey(im)),
    "grey, turned": lambda im, a, step: rotate(grey(im), a),
    "grey, turned to the nearest model angle": lambda im, a, step: rotate(grey(im), round(a / step) * step),
    "grey, turned to the nearest model angle, shrunk": lambda im, a, step: shrink(rotate(grey(im), round(a / step)
                                                                                          * step)),
    "catalogue-like (grey, turned, shrunk)": lambda im, a, step: shrink(rotate(grey(im), a)),
}


def finder_on_grey(photos: list[np.ndarray]) -> str:
    """How the coin finder's circle on each grey photo differs from its circle on the colour photo."""
    moved = []
    for im in photos:
        a, b = locate_coin(im).circle, locate_coin(grey(im)).circle
        moved.append((np.hypot(a.x - b.x, a.y - b.y) / a.r, abs(a.r - b.r) / a.r))
    centre, radius = np.array(moved).T
    return (f"the coin finder on the grey photo against the colour one: the circle's centre or radius moves by more "
            f"than 1 % of the radius on {int(((centre > 0.01) | (radius > 0.01)).sum())} of {len(photos)} queries; "
            f"radius change median {np.median(radius):.1%}, max {radius.max():.1%}; centre shift median "
            f"{np.median(centre):.1%}, max {centre.max():.1%} of the radius")


def main() -> None:
    args = model_arguments(__doc__, "query-forms").parse_args()
    embedder = angle_embedder(args.model)
    d, how = stored_vectors(embedder, "euro")
    print(f"catalogue vectors {how}", flush=True)
    d["test"] = "euro pairs (84)"
    cat_csv, q_csv = pairs_manifests()
    with open(cat_csv, encoding="utf-8") as f:
        ids = np.array([r["id"] for r in csv.DictReader(f)])
    queries = read_queries(q_csv, "coin_id")
    if not np.array_equal(d["true"], [np.flatnonzero(ids == q.true_id)[0] for q in queries]):
        raise SystemExit("query_scales.py's stored euro vectors come from another catalogue: delete them, run again")
    photos = load_query_images(queries, "photo")
    rng = np.random.default_rng(0)  # evaluation.protocol's draws: one uniform angle per query, in order
    angles = [float(rng.uniform(0, 360)) for _ in photos]
    step = 360 / embedder.rotations
    density = DENSITY_WEIGHT * catalogue_density(d)
    rows = []
    for form, make in FORMS.items():
        d[f"{form}:v"], d[f"{form}:a"] = embedder.embed_with_angles([search_crop(make(im, a, step))
                                                                    for im, a in zip(photos, angles)])
        rows.append(row(d, "query", form, score(d, form, "cat") - density[None, :]))
        print(form, f"{rows[-1]['R@1']:.3f}", flush=True)
    lines = (f"the model's angles: {embedder.rotations}, {step:g} degrees apart", finder_on_grey(photos))
    report(args.name, args.model, rows, ("query form (search's score)", 48), lines)


if __name__ == "__main__":
    main()

"""How far the whitening's fit moves the frozen descriptor: more augmented views per coin, a second scale.

    .venv/bin/python benchmarks/whitening_fit.py [--image-size 224] [--limit 2000] [--train 1300] [--views 4]
        [--small 160] [--reuse] [--name whitening-fit]

The descriptors of benchmarks/rings.py (grey ImageNet Lite0, 16 angles, GeM over the whole last map and
over three rings), as the whole map alone and as the whole map + rings of `--rings`. Rows:
- views: the whitening (512-d, shrinkage 0.1) fitted on every training coin against 1, 2, ... ``--views``
  augmented views of it, as `coinmatch train --loss whitening --whitening-views N` does;
- scales: the same images embedded at ``--image-size`` and at ``--small`` px (the training views are made
  once, at ``--image-size``, then shrunk, so both scales see the very same views), the two descriptors
  summed (multi-scale pooling, Radenović et al. 2018) or joined, then whitened on 2 views.
Scored as the other studies: the training loop's held-out coins (val P@1) and the euro real pairs as
photographed and catalogue-like (benchmarks/common.py). The descriptors are kept in out/benchmarks/
(``--reuse``).
"""

from __future__ import annotations

import numpy as np

from common import SCORE_COLUMNS, WORK, format_table, save_results, stored_descriptors, study_arguments, unit
from rings import VARIANTS, extract, scores, variant, whitened

PIECES = {"whole map": VARIANTS["whole map (now)"], "whole + rings (--rings)": VARIANTS["whole + rings (--rings)"]}


def study(base: dict[str, np.ndarray], small: dict[str, np.ndarray], n_views: int, size: int,
          small_size: int) -> list[dict]:
    rows = []
    for name, make in PIECES.items():
        v = variant(base, make)
        for views in range(1, n_views + 1):
            rows.append({"descriptor": name, "fit": f"{size} px, {views} view{'s' * (views > 1)}",
                         **scores(whitened(v, views), base)})
        s = variant(small, make)
        two = {k: a[: 2 * len(v["x"])] if k == "y" else a for k, a in v.items()}  # the views `small` saw
        for how, join in ((f"{small_size} px alone", lambda a, b: b),
                          (f"{size} + {small_size} px summed", lambda a, b: unit(a + b)),
                          (f"{size} + {small_size} px joined", lambda a, b: unit(np.concatenate([a, b], 1)))):
            both = {k: join(two[k], s[k]) for k in two}
            rows.append({"descriptor": name, "fit": how + ", 2 views", **scores(whitened(both, 2), base)})
    return rows


def main() -> None:
    ap = study_arguments(__doc__.splitlines()[0], "whitening-fit")
    ap.add_argument("--views", type=int, default=4, help="fit on 1 to this many augmented views of each coin")
    ap.add_argument("--small", type=int, default=160, help="the second, smaller input size")
    args = ap.parse_args()
    if args.views < 2:
        ap.error("--views must be at least 2 (the scale rows use two)")
    WORK.mkdir(parents=True, exist_ok=True)
    stem = WORK / f"whitening-fit-{args.image_size}-{args.limit}-{args.train}"
    base, how = stored_descriptors(stem.with_name(stem.name + f"-{args.views}.npz"), args.reuse,
                                   lambda: extract(args.image_size, args.limit, args.train, args.views))
    small, how_small = stored_descriptors(
        stem.with_name(stem.name + f"-2-at{args.small}.npz"), args.reuse,
        lambda: extract(args.image_size, args.limit, args.train, 2, embed_size=args.small))
    assert (base["q_ids"] == small["q_ids"]).all() and (base["cat_ids"] == small["cat_ids"]).all()
    print(f"Lite0, grey, 16 angles: {args.image_size} px descriptors {how}, {args.small} px {how_small}",
          flush=True)
    rows = study(base, small, args.views, args.image_size, args.small)
    text = format_table(rows, [("descriptor", "descriptor", "<24"), ("fit", "whitening fitted on", "<30"),
                               *SCORE_COLUMNS])
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

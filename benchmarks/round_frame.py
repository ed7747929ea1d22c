"""A round frame: can the recipe be made blind to turning and keep the background around the coin?

    .venv/bin/python benchmarks/round_frame.py [--margin 0.15] [--reuse] [--name round-frame]

Turned by 45 degrees, a crop's vector keeps a mean cosine of only about 0.78 with its own (benchmarks/turns.py):
the square crop's corners, which a turn cuts, carry background. Catalogue-like queries are turned by any angle,
and turning costs the recipe most of its open-set separation (benchmarks/query_forms.py). `--mask` paints mid-grey outside the
coin's disc at every angle and makes the vector all but blind to turning (0.997), yet loses on both real tests
(README, stop 21), having taken the rim's outer edge and its shadow too. This study keeps a ring of background
and paints only what a turn changes: the coin is cropped with a margin of ``--margin`` (0.15) of its radius
beyond the rim, against search's 0.04, and the network paints mid-grey outside the crop's inscribed circle, at
every angle (`--mask` with its radius at the crop's half width).

It trains the recipe so (the README's recipe command with `--mask`, every coin found and cropped again at that
margin: about 31 minutes on 2 cores) and scores it and the recipe as it is (``--recipe``, the control) on both real
tests: the euro pairs (benchmarks/common.py) and the euro singles' mined pairs (benchmarks/singles_pairs.py, mined
as that study mines them, before anything here changes the crop). Every entry is scored by search's score ((pooled
+ aligned cosine) / 2), with and without local density (search's k = 10 and weight 0.5). A third line per model:
the mean cosine of 12 real crops' vectors with their own turned by 45 degrees (benchmarks/turns.py's).

Nothing in coinmatch changes for good: the margin and the radius are set in this process only (module constants
of segment, prepare, augment and the network), the model file goes to out/benchmarks/, and its training cache and
ONNX files go to folders of their own there, so that no other run reads crops of another margin back.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np

from common import DATA, EURO, WORK, euro_crops, format_table, save_results, search_crop
from density import catalogue_density
from query_scales import row, score
from singles_pairs import real_test
from turns import turn
import coinmatch.models.network as network
import coinmatch.prepare as prepare
import coinmatch.training.augment as augment
from coinmatch import segment
from coinmatch.evaluation.protocol import load_query_images
from coinmatch.models.modelfile import LoadedModel, builtin_model, load_model
from coinmatch.models.runtime import Embedder
from coinmatch.search import DENSITY_WEIGHT

FORMS = ("photo", "catalogue-like")
SEARCH_FRAME = (segment.CROP_MARGIN, network.DISC_RADIUS)  # as coinmatch crops and masks, before set_frame
RECIPE = ["--loss", "whitening", "--grey", "--rotations", "16", "--rings", "--whitening-views", "2"]


def set_frame(margin: float, radius: float) -> None:
    """In this process: crops reach ``margin`` of the coin's radius beyond its rim, and a masking network paints
    outside ``radius`` (in half widths of the crop)."""
    network.DISC_RADIUS = radius
    network.disc_mask.cache_clear()
    network.pool_weights.cache_clear()  # a --disc model pools within the disc
    prepare.crop_coin = functools.partial(segment.crop_coin, margin=margin)
    augment.CROP_MARGIN = margin  # where augmentation puts another background: outside the coin's disc


def train(out: str, margin: float, mask: bool = True) -> float:
    """The recipe with the round frame (``mask``: painted outside the crop's inscribed circle), coins cropped at
    ``margin``, into ``out``; returns its wall time in seconds. Call set_frame first."""
    from coinmatch.cli import main

    cache = os.environ.get("COINMATCH_CACHE")
    os.environ["COINMATCH_CACHE"] = str(WORK / f"round-frame-cache-{margin:g}")  # crops of this margin only
    argv = sys.argv
    sys.argv = ["coinmatch", "train", str(DATA / "ancient-coins" / "ocre.csv"), str(EURO / "singles.csv"),
                "--type-column", "denomination", "--limit", "2000", *RECIPE, *(["--mask"] if mask else []),
                "--out", out]
    # no --workers: processes of their own (spawned) would find and crop the coins without set_frame's settings
    t = time.perf_counter()
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        sys.argv = argv
        if cache is None:
            os.environ.pop("COINMATCH_CACHE")
        else:
            os.environ["COINMATCH_CACHE"] = cache
    return time.perf_counter() - t


def embedder_of(path: str, label: str, prefix: str = "round-frame-") -> Embedder:
    """The model's embedder (``path`` "default": the untrained network search uses without --model), exported afresh
    to an ONNX file of the study's (the disc's radius is baked into the graph)."""
    m = builtin_model() if path == "default" else load_model(path)
    name = prefix + label.replace(" ", "-").replace("/", "-")
    return Embedder(LoadedModel(m.network.eval(), m.config, name, m.source), onnx_file=WORK / f"{name}.onnx")


def score_test(model: str, embedder: Embedder, test: str, cat: list, forms: dict, true: np.ndarray,
               names: np.ndarray) -> list[dict]:
    d = {"test": test, "true": true, "names": names}
    d["cat:v"], d["cat:a"] = embedder.embed_with_angles(cat)
    density = catalogue_density(d)
    rows = []
    for form in FORMS:
        d[f"{form}:v"], d[f"{form}:a"] = embedder.embed_with_angles([search_crop(im) for im in forms[form]])
        S = score(d, form, "cat")
        rows.append({"model": model, **row(d, form, "no density", S)})
        rows.append({"model": model, **row(d, form, "density", S - DENSITY_WEIGHT * density[None, :])})
    return rows


def both_tests(label: str, embedder: Embedder, singles) -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """``score_test``'s rows on the euro pairs and on the singles' pairs (``singles``: ``real_test``'s catalogue
    photos, query forms and truth), and the euro queries' forms."""
    ids, cat, queries = euro_crops()
    true = np.array([np.flatnonzero(ids == q.true_id)[0] for q in queries])
    names = np.array([q.name.rsplit("/", 1)[-1] for q in queries])
    forms = {form: load_query_images(queries, form) for form in FORMS}
    rows = score_test(label, embedder, "euro pairs (84)", cat, forms, true, names)
    s_cat, s_forms, s_true = singles
    rows += score_test(label, embedder, "singles pairs", [search_crop(im) for im in s_cat], s_forms, s_true,
                       np.array([], dtype=str))
    return rows, forms


def study(label: str, path: str, margin: float, radius: float, singles) -> tuple[list[dict], float]:
    set_frame(margin, radius)
    embedder = embedder_of(path, label)
    rows, forms = both_tests(label, embedder, singles)
    crops = [search_crop(im) for im in forms["photo"][::7][:12]]
    turned = float(np.mean(np.sum(embedder.embed(crops) * embedder.embed([turn(c, 45) for c in crops]), 1)))
    return rows, turned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--margin", type=float, default=0.15, help="background kept beyond the rim, in coin radii")
    ap.add_argument("--recipe", default="runs/s23/recipe.cm", help="the control: the recipe as it is")
    ap.add_argument("--reuse", action="store_true", help="score the round-frame model of an earlier run")
    ap.add_argument("--name", default="round-frame", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    if not os.path.isfile(args.recipe):
        raise SystemExit(f"{args.recipe}: model file not found (the README's recipe command makes it)")
    WORK.mkdir(parents=True, exist_ok=True)
    out = str(WORK / f"round-frame-{args.margin:g}.cm")
    # the singles' pairs as singles_pairs.py mines them, before any crop here changes; their photos uncropped
    _, s_cat, s_forms, s_true = real_test(crop=lambda rgb: rgb)
    lines = []
    if not (args.reuse and os.path.isfile(out)):
        set_frame(args.margin, 1.0)
        lines.append(f"trained {out} in {train(out, args.margin):.0f} s")
    rows, turned = [], {}
    for label, path, margin, radius in (("recipe", args.recipe, *SEARCH_FRAME),
                                        (f"round frame {args.margin:g}", out, args.margin, 1.0)):
        r, turned[label] = study(label, path, margin, radius, (s_cat, s_forms, s_true))
        rows += r
    lines += [f"{label}: mean cosine of a crop's vector with its own turned 45 degrees, 12 real crops: {c:.3f}"
              for label, c in turned.items()]
    columns = [("model", "model", "<18"), ("test", "test", "<16"), ("form", "form", "<15"),
               ("method", "method", "<11"), ("R@1", "R@1", "6.3f"), ("R@5", "R@5", "6.3f"),
               ("AUC", "ROC AUC", "8.3f"), ("TPR@1%", "TPR@1%FPR", "10.3f"), ("misses", "not first (rank)", "<")]
    text = "\n".join([f"recipe {args.recipe}; round frame: margin {args.margin:g}, mask at the crop's half width"]
                     + lines) + "\n" + format_table(rows, columns)
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

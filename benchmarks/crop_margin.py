"""How far beyond the coin's rim its crop should reach (segment.CROP_MARGIN), on both real same-coin tests.

    .venv/bin/python benchmarks/crop_margin.py [--models default runs/s27/recipe.cm] [--margins 0.04 0.015 -0.01]

The crop keeps a ring of background beyond the found circle. The refined finder's circle lies on the coin's outer
edge (Hough's lay about 2 % inside it on the singles), so the same margin now keeps more background, and the
background is what differs between two photos of one coin taken on other cloths. This searches both real tests
(the euro pairs; the singles' mined pairs, one query a coin, benchmarks/singles_pairs.py) with catalogue and
queries cropped at each margin, every entry scored as search scores it (pooled cosine, averaged with the aligned
cosine for a model of angle vectors), with and without local density. Models are used as trained (the recipe at
0.04), so this is the margin at search time; the network's ring pooling follows the margin (models.network's
DISC_RADIUS is read when the ONNX graph is made, so each margin gets its own export). About 5 minutes a model and
margin on 2 cores.
"""

from __future__ import annotations

import argparse

import numpy as np

from aligned import scores
from common import SCORE_COLUMNS, WORK, euro_crops, format_table, save_results, search_crop
from singles_pairs import real_test
from coinmatch import segment
from coinmatch.align import cyclic_similarity
from coinmatch.evaluation.protocol import load_query_images
from coinmatch.models import network
from coinmatch.models.modelfile import LoadedModel, builtin_model, load_model
from coinmatch.models.runtime import Embedder
from coinmatch.search import DENSITY_K, DENSITY_WEIGHT

FORMS = ("photo", "catalogue-like")


def set_margin(margin: float) -> None:
    """Crop at ``margin`` from here on: segment.crop_coin's default, and the disc that ring pooling reads."""
    segment.CROP_MARGIN = margin
    segment.crop_coin.__defaults__ = (margin,) + segment.crop_coin.__defaults__[1:]
    network.DISC_RADIUS = 1 / (1 + margin)


def embedder_at(model: str, margin: float) -> Embedder:
    """The model's embedder with an ONNX graph made at this margin (ring pooling's disc is fixed in the graph)."""
    m = builtin_model() if model == "default" else load_model(model)
    name = f"crop-margin-{model.replace('/', '-')}-{margin:g}"
    return Embedder(LoadedModel(m.network.eval(), m.config, name, m.source), onnx_file=WORK / f"{name}.onnx")


def pair_scores(q: tuple[np.ndarray, np.ndarray | None], c: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
    s = q[0] @ c[0].T
    return s if q[1] is None else (s + cyclic_similarity(q[1], c[1])) / 2


def score_test(embedder: Embedder, test: str, cat: list[np.ndarray], forms: dict[str, list[np.ndarray]],
               true: np.ndarray, names: np.ndarray) -> list[dict]:
    c = embedder.embed_with_angles([search_crop(im) for im in cat])
    between = pair_scores(c, c)
    np.fill_diagonal(between, -np.inf)
    density = np.sort(between, 1)[:, -DENSITY_K:].mean(1)
    rows = []
    for form in FORMS:
        S = pair_scores(embedder.embed_with_angles([search_crop(im) for im in forms[form]]), c)
        for method, M in (("no density", S), ("density", S - DENSITY_WEIGHT * density[None, :])):
            rank = (M > M[np.arange(len(M)), true][:, None]).sum(1) + 1
            misses = (", ".join(f"{n.removesuffix('_b.jpg')} {r}" for n, r in zip(names, rank) if r > 1) if len(names)
                      else f"{int((rank > 1).sum())} queries")
            rows.append({"test": test, "form": form, "method": method, **scores(M, true), "misses": misses})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["default", "runs/s27/recipe.cm"],
                    help="model files, or 'default' (the untrained network search uses without --model)")
    ap.add_argument("--margins", nargs="+", type=float, default=[0.04, 0.015, -0.01], help="crop margins, in radii")
    ap.add_argument("--name", default="crop-margin", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    kept = segment.CROP_MARGIN
    _, s_cat, s_forms, s_true = real_test(crop=lambda rgb: rgb)  # photos; cropped below at each margin
    ids, e_cat, queries = euro_crops(crop=lambda rgb: rgb)
    e_true = np.array([np.flatnonzero(ids == q.true_id)[0] for q in queries])
    e_forms = {form: load_query_images(queries, form) for form in FORMS}
    names = np.array([q.name.rsplit("/", 1)[-1] for q in queries])
    rows = []
    try:
        for model in args.models:
            for margin in args.margins:
                set_margin(margin)
                embedder = embedder_at(model, margin)
                for test, cat, forms, true, n in (("euro pairs (84)", e_cat, e_forms, e_true, names),
                                                  (f"singles ({len(s_true)})", s_cat, s_forms, s_true, np.array([]))):
                    rows += [{"model": model, "margin": margin, **r} for r in score_test(embedder, test, cat, forms,
                                                                                          true, n)]
                print(f"{model} at {margin:g}: done", flush=True)
    finally:
        set_margin(kept)
    columns = [("model", "model", "<20"), ("margin", "margin", "7.3f"), ("test", "test", "<16"), ("form", "form", "<15"),
               ("method", "method", "<11")] + SCORE_COLUMNS
    text = (f"crop margin beyond the found rim, catalogue and queries alike; finder: {len(segment.REFINE_PASSES)} "
            f"refining passes\n" + format_table(rows, columns))
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

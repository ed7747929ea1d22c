"""How far beyond the coin's rim its crop should reach (segment.CROP_MARGIN), on both real same-coin tests.

    .venv/bin/python benchmarks/crop_margin.py [--models default runs/s27/recipe.cm] [--margins 0.04 0.015 -0.01]

The crop keeps a ring of background beyond the found circle. The refined finder's circle lies on the coin's outer
edge (Hough's lay about 2 % inside it on the singles), so the same margin now keeps more background, and the
background is what differs between two photos of one coin taken on other cloths. This searches both real tests
(the euro pairs; the singles' mined pairs, one query a coin, benchmarks/singles_pairs.py) with catalogue and
queries cropped at each margin, every entry scored as search scores it (pooled cosine, averaged with the aligned
cosine for a model of angle vectors), with and without local density (round_frame.score_test). Models are used as
trained (the recipe at 0.04), so this is the margin at search time. The disc of a masking or disc-pooling model
follows the margin (round_frame.set_frame; fixed in the ONNX graph, so each margin gets its own export); the
recipe's rings are fixed shares of the crop and do not. About 5 minutes a model and margin on 2 cores.
"""

from __future__ import annotations

import argparse

import numpy as np

from common import SCORE_COLUMNS, euro_crops, format_table, save_results, search_crop
from round_frame import FORMS, SEARCH_FRAME, embedder_of, score_test, set_frame
from singles_pairs import real_test
from coinmatch import segment
from coinmatch.evaluation.protocol import load_query_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["default", "runs/s27/recipe.cm"],
                    help="model files, or 'default' (the untrained network search uses without --model)")
    ap.add_argument("--margins", nargs="+", type=float, default=[0.04, 0.015, -0.01], help="crop margins, in radii")
    ap.add_argument("--name", default="crop-margin", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    _, s_cat, s_forms, s_true = real_test(crop=lambda rgb: rgb)  # photos; cropped below at each margin
    ids, e_cat, queries = euro_crops(crop=lambda rgb: rgb)
    e_true = np.array([np.flatnonzero(ids == q.true_id)[0] for q in queries])
    e_forms = {form: load_query_images(queries, form) for form in FORMS}
    names = np.array([q.name.rsplit("/", 1)[-1] for q in queries])
    rows = []
    try:
        for model in args.models:
            for margin in args.margins:
                set_frame(margin, 1 / (1 + margin))  # a masking or disc-pooling model's disc follows the crop
                embedder = embedder_of(model, f"{model}-{margin:g}", prefix="crop-margin-")
                for test, cat, forms, true, n in (("euro pairs (84)", e_cat, e_forms, e_true, names),
                                                  (f"singles ({len(s_true)})", s_cat, s_forms, s_true, np.array([]))):
                    crops = [search_crop(im) for im in cat]
                    rows += [{"margin": margin, **r} for r in score_test(model, embedder, test, crops, forms, true, n)]
                print(f"{model} at {margin:g}: done", flush=True)
    finally:
        set_frame(*SEARCH_FRAME)
    columns = [("model", "model", "<20"), ("margin", "margin", "7.3f"), ("test", "test", "<16"),
               ("form", "form", "<15"), ("method", "method", "<11")] + SCORE_COLUMNS
    text = (f"crop margin beyond the found rim, catalogue and queries alike; finder: {len(segment.REFINE_PASSES)} "
            f"refining passes\n" + format_table(rows, columns))
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

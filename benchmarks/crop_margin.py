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

``--train M...`` also trains the recipe (the README's command, round_frame.train without the mask) with every coin
cropped at margin M, about 46 minutes each on 2 cores, into out/benchmarks/crop-margin-recipe-M.cm (``--reuse``
keeps one already there), and searches it at the margin it was trained at: the margin at training and search time.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from common import SCORE_COLUMNS, WORK, euro_crops, format_table, save_results, search_crop
from round_frame import FORMS, SEARCH_FRAME, embedder_of, score_test, set_frame, train
from singles_pairs import real_test
from coinmatch import segment
from coinmatch.evaluation.protocol import load_query_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["default", "runs/s27/recipe.cm"],
                    help="model files, or 'default' (the untrained network search uses without --model)")
    ap.add_argument("--margins", nargs="+", type=float, default=[0.04, 0.015, -0.01], help="crop margins, in radii")
    ap.add_argument("--train", nargs="*", type=float, default=[],
                    help="margins to train the recipe at (each searched at its own margin only)")
    ap.add_argument("--reuse", action="store_true", help="keep a recipe trained at a margin by an earlier run")
    ap.add_argument("--name", default="crop-margin", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    jobs = [(model, margin, False) for model in args.models for margin in args.margins]  # False: no training
    jobs += [(str(WORK / f"crop-margin-recipe-{margin:g}.cm"), margin, True) for margin in args.train]
    _, s_cat, s_forms, s_true = real_test(crop=lambda rgb: rgb)  # photos; cropped below at each margin
    ids, e_cat, queries = euro_crops(crop=lambda rgb: rgb)
    e_true = np.array([np.flatnonzero(ids == q.true_id)[0] for q in queries])
    e_forms = {form: load_query_images(queries, form) for form in FORMS}
    names = np.array([q.name.rsplit("/", 1)[-1] for q in queries])
    rows, lines = [], []
    try:
        for model, margin, trains in jobs:
            set_frame(margin, 1 / (1 + margin))  # a masking or disc-pooling model's disc follows the crop
            if trains and not (args.reuse and os.path.isfile(model)):
                WORK.mkdir(parents=True, exist_ok=True)
                lines.append(f"trained {model} in {train(model, margin, mask=False):.0f} s")
                print(lines[-1], flush=True)
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
            f"refining passes\n" + "".join(f"{line}\n" for line in lines) + format_table(rows, columns))
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

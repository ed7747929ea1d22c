"""Does refining the coin finder's circle onto the rim help retrieval, with and without retraining on its crops?

    .venv/bin/python benchmarks/refined_finder.py --models runs/s23/recipe.cm runs/s27/recipe.cm [--name refined-finder]

Hough's circle is coarse and unsteady: a grey copy of a photo, or one turned, moves it by more than 3 % of the
radius on a third of the euro pairs (benchmarks/finder.py --change refine), so a coin is framed differently in the
catalogue and in the query. The finder now refines it onto the rim (segment.REFINE_PASSES). This study scores each
model, searched with Hough's circles as they won (refining off) and with the refined ones, on both real tests: the
euro pairs (benchmarks/common.py) and the euro singles' mined pairs (benchmarks/singles_pairs.py), mined once with
Hough's circles (under a cache folder of this study's own) so that both finders face the same pairs (56 queries
since stop 28). Every entry is scored by search's score ((pooled + aligned cosine) / 2), with and without local
density (search's k and weight), as benchmarks/round_frame.py scores.
Give it a model trained with each finder (the README's recipe command, run before and after the change: the
training cache is keyed by the finder's source, so a run after it crops every coin again). About 9 minutes a model
and finder on 2 cores.
"""

from __future__ import annotations

import argparse
import os

from common import SCORE_COLUMNS, WORK, format_table, save_results
from round_frame import both_tests
from singles_pairs import real_test
from coinmatch import segment
from coinmatch.models.runtime import Embedder

FINDERS = {"Hough's circle": (), "refined": segment.REFINE_PASSES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, help="model files (angle vectors: --rotations > 1)")
    ap.add_argument("--name", default="refined-finder", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    for path in args.models:
        if not os.path.isfile(path):
            raise SystemExit(f"{path}: model file not found (the README's recipe command makes one)")
    # The singles' pairs are mined from the training cache's crops, made here with Hough's circles: a cache folder of
    # this study's own, since the cache's key knows the finder's source but not a setting changed in this process.
    os.environ["COINMATCH_CACHE"] = str(WORK / "refined-finder-cache")
    segment.REFINE_PASSES = FINDERS["Hough's circle"]  # the singles' pairs mined as before the change
    _, s_cat, s_forms, s_true = real_test(crop=lambda rgb: rgb)
    rows = []
    for path in args.models:
        embedder = Embedder(path)
        for finder, passes in FINDERS.items():
            segment.REFINE_PASSES = passes
            rows += [{"finder": finder, **r} for r in both_tests(path, embedder, (s_cat, s_forms, s_true))[0]]
            print(f"{path}, {finder}: done", flush=True)
    columns = [("model", "model", "<20"), ("finder", "finder", "<15"), ("test", "test", "<16"),
               ("form", "form", "<15"), ("method", "method", "<11")] + SCORE_COLUMNS
    text = (f"coin finder refining passes (band, step): {FINDERS['refined']}; singles pairs mined with Hough's "
            f"circles\n" + format_table(rows, columns))
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

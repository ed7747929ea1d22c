"""Does the crop's background help only because a test shares it? Masked against kept, on both real tests.

    .venv/bin/python benchmarks/background.py [--models default runs/MODEL.cm ...] [--name background]

Search embeds the coin crop with its background (prepare.py): masking it was worse on the euro pairs. But the
euro pairs are one layout of coins photographed twice, minutes apart, so the two photos of a coin share their
background (the cloth, the neighbouring coins): a descriptor could gain from that, and lose it on real
provenance photos, where the catalogue scan and the new photo never share one. The euro singles' mined pairs
(benchmarks/singles_pairs.py) are the test without that: the two photos of a coin come from different pile
photos, on other cloths, among other coins. This scores, on both tests, as photographed and catalogue-like
(the same sets and draws as retrieval.py and singles_pairs.py), recall@1 by the pooled cosine of:
  - the background kept (search now);
  - the background masked outside the found coin, black or mid-grey (catalogue and queries alike).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import euro_crops, format_table, save_results, search_crop
from singles_pairs import real_test
from coinmatch.evaluation.protocol import load_query_images
from coinmatch.models.runtime import Embedder
from coinmatch.segment import crop_coin, locate_coin

FORMS = ("photo", "catalogue-like")


def masked(fill: int):
    return lambda rgb: crop_coin(rgb, locate_coin(rgb), mask=True, fill=fill)


VARIANTS = {"background kept (search now)": search_crop, "masked, black": masked(0), "masked, mid-grey": masked(128)}


def recall_at_1(queries: np.ndarray, catalogue: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.argmax(queries @ catalogue.T, axis=1) == truth))


def scores(embedder: Embedder, crop) -> dict[str, float]:
    """Recall@1 on both tests, both forms, with every crop (catalogue and queries) made by ``crop``."""
    out = {}
    cat_ids, cat_crops, queries = euro_crops(crop)
    truth = np.array([np.flatnonzero(cat_ids == q.true_id)[0] for q in queries])
    cat = embedder.embed(cat_crops)
    for form in FORMS:
        photos = load_query_images(queries, form, seed=0)
        out[f"euro {form}"] = recall_at_1(embedder.embed([crop(im) for im in photos]), cat, truth)
    _, cat_crops, forms, truth = real_test(crop)
    cat = embedder.embed(cat_crops)
    for form in FORMS:
        out[f"singles {form}"] = recall_at_1(embedder.embed([crop(im) for im in forms[form]]), cat, truth)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["default"], help="model files, or 'default'")
    ap.add_argument("--name", default="background", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    rows = []
    for m in args.models:
        embedder = Embedder(None if m == "default" else m)
        for variant, crop in VARIANTS.items():
            t = time.perf_counter()
            rows.append({"model": m, "crop": variant, **scores(embedder, crop), "seconds": time.perf_counter() - t})
            print(rows[-1], flush=True)
    columns = [("model", "model", "<34"), ("crop", "crop", "<30")] + [
        (f"{test} {form}", f"{test} {'photo' if form == 'photo' else 'cat-like'}", "13.3f")
        for test in ("euro", "singles") for form in FORMS] + [("seconds", "s", "5.0f")]
    text = ("recall@1 by the pooled cosine; euro pairs (84 queries, 955 entries) and the singles' mined pairs "
            "(71, 431)\n" + format_table(rows, columns))
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

"""Retrieval on real same-coin pairs, every method side by side in one run.

    .venv/bin/python benchmarks/retrieval.py [--models M.cm ...] [--skip-verify] [--candidates 20 [50 ...]]
        [--skip-baselines] [--skip-default] [--invariant [--invariant-size 224]] [--name retrieval]

Protocol (benchmarks/common.py): catalogue = 84 `_a` crops + 871 distractors of the same types;
queries = the 84 `_b` crops, as photographed and catalogue-like (grey, random rotation, 128 px, seed 0).
Methods: perceptual hash; pooled ImageNet features of the whole image (the reference baseline);
the untrained ImageNet model (coin found and cropped, GeM pooling) and coinmatch's default model (the bundled
recipe), with and without verification; and every trained model file given. Each model is
searched as `coinmatch search` searches (its top 20 scored again: aligned where it has angles, less half their
local density), through the public API. The .json results also list, for each row, the queries whose coin was
not ranked first and its rank (0: below the search depth).
"""

from __future__ import annotations

import argparse
import time

import imagehash
import numpy as np
from PIL import Image

from common import WORK, format_table, pairs_manifests, save_results, untrained_invariant_model
from coinmatch import Catalogue
from coinmatch.catalog.manifest import read_manifest
from coinmatch.evaluation import metrics
from coinmatch.evaluation.protocol import load_query_images, read_queries
from coinmatch.evaluation.run import evaluate
from coinmatch.images import load_rgb
from coinmatch.models.modelfile import IMAGENET_MODEL, LoadedModel, ModelConfig, build_network, fingerprint_of
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_array

FORMS = ("photo", "catalogue-like")


def score_matrix(sims: np.ndarray, cat_ids: list[str], true_ids: list[str], seconds: float) -> dict:
    """Figures from a full query x catalogue similarity matrix (one image per entry)."""
    order = np.argsort(-sims, axis=1)
    ranks, pos, neg = [], [], []
    for i, t in enumerate(true_ids):
        ranked = [cat_ids[j] for j in order[i]]
        ranks.append(ranked.index(t) + 1)
        pos.append(sims[i, cat_ids.index(t)])
        neg.append(max(sims[i, j] for j in order[i][:2] if cat_ids[j] != t))
    roc = metrics.open_set(np.array(pos), np.array(neg))
    return {"recall@1": metrics.recall_at(ranks, 1), "recall@5": metrics.recall_at(ranks, 5),
            "map": metrics.mean_average_precision(ranks), "roc_auc": roc["roc_auc"],
            "tpr@fpr=0.01": roc["tpr@fpr=0.01"], "ms_per_query": 1000 * seconds / len(true_ids)}


def baseline_rows(cat_csv, queries, images_by_form) -> list[dict]:
    entries = read_manifest(cat_csv)
    cat_ids = [e.id for e in entries]
    cat_images = [load_rgb(e.faces[0].path) for e in entries]
    true_ids = [q.true_id for q in queries]
    rows = []

    def phash(rgb):
        return imagehash.phash(Image.fromarray(prepare_array(rgb).crop)).hash.ravel()

    cat_hash = np.array([phash(im) for im in cat_images], dtype=np.float32)
    for form, images in images_by_form.items():
        t = time.perf_counter()
        qh = np.array([phash(im) for im in images], dtype=np.float32)
        sims = 1 - (qh[:, None, :] != cat_hash[None, :, :]).mean(axis=2)
        rows.append({"method": "perceptual hash (imagehash.phash of the coin crop)", "form": form,
                     **score_matrix(sims, cat_ids, true_ids, time.perf_counter() - t)})

    # the reference: pooled ImageNet EfficientNet-Lite0 features of the whole image at 224 px, cosine
    config = ModelConfig(pooling="avg")
    net = build_network(config).eval()
    plain = Embedder(LoadedModel(net, config, fingerprint_of(net, config), "imagenet-avg"), backend="onnx")

    def whole(rgb):
        s = min(rgb.shape[:2])
        y, x = (rgb.shape[0] - s) // 2, (rgb.shape[1] - s) // 2
        return rgb[y:y + s, x:x + s]

    cat_v = plain.embed([whole(im) for im in cat_images])
    for form, images in images_by_form.items():
        t = time.perf_counter()
        qv = plain.embed([whole(im) for im in images])
        rows.append({"method": "ImageNet Lite0, avg-pooled, whole image, no training", "form": form,
                     **score_matrix(qv @ cat_v.T, cat_ids, true_ids, time.perf_counter() - t)})
    return rows


def coinmatch_rows(label, model, cat_csv, queries, images_by_form, verify: bool,
                   depths: tuple[int, ...] = (20,)) -> list[dict]:
    """The embedding's ranking, then (with ``verify``) the top ``depth`` candidates verified, for each depth, as
    search ranks them. Each row is named by the searcher's score (search.py: aligned-density, cosine-density)."""
    root = WORK / f"catalogue-{label.replace(' ', '_').replace('/', '_')}"
    rows = []
    with Catalogue.build(root, cat_csv, model=model, features=verify) as cat:
        searcher = cat.searcher
        name = f"{label}, {searcher.scoring}"
        for form, images in images_by_form.items():
            for depth in (None,) + (tuple(depths) if verify else ()):
                ev = evaluate(searcher, queries, images, verify=depth is not None, candidates=depth or 20)
                s = ev.summary()
                rows.append({"method": name + (f" + verification (top {depth})" if depth else ""), "form": form,
                             **{k: s[k] for k in ("recall@1", "recall@5", "map", "roc_auc", "tpr@fpr=0.01",
                                                  "ms_per_query")},
                             "misses": {o.query.true_id: o.rank for o in ev.outcomes if o.rank != 1}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=[], help="trained model files to score beside the default")
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--candidates", type=int, nargs="+", default=[20],
                    help="verify this many top candidates per query (several: one row each)")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--skip-default", action="store_true", help="skip the ImageNet model's and the default's rows")
    ap.add_argument("--invariant", action="store_true", help="also the untrained network, grey, 16 rotations")
    ap.add_argument("--invariant-size", type=int, default=224,
                    help="its input size (128: the size the gradient-trained models see)")
    ap.add_argument("--name", default="retrieval", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    cat_csv, q_csv = pairs_manifests()
    queries = read_queries(q_csv, "coin_id")
    images_by_form = {form: load_query_images(queries, form, seed=0) for form in FORMS}
    rows = [] if args.skip_baselines else baseline_rows(cat_csv, queries, images_by_form)
    if not args.skip_default:
        rows += coinmatch_rows("ImageNet Lite0 (coin crop, GeM, no training)", IMAGENET_MODEL, cat_csv, queries,
                               images_by_form, verify=not args.skip_verify, depths=args.candidates)
        rows += coinmatch_rows("coinmatch default (the bundled recipe)", None, cat_csv, queries,
                               images_by_form, verify=not args.skip_verify, depths=args.candidates)
    if args.invariant:
        path = untrained_invariant_model(args.invariant_size)
        size = "" if args.invariant_size == 224 else f", {args.invariant_size} px"
        rows += coinmatch_rows(f"untrained Lite0, grey, rotation pooling over 16 angles{size}", str(path), cat_csv,
                               queries, images_by_form, verify=not args.skip_verify, depths=args.candidates)
    for m in args.models:
        rows += coinmatch_rows(f"trained {m.split('/')[-1]}", m, cat_csv, queries, images_by_form,
                               verify=not args.skip_verify, depths=args.candidates)
    text = format_table(rows, [("method", "method", "<70"), ("form", "form", "<15"), ("recall@1", "R@1", "6.3f"),
                               ("recall@5", "R@5", "6.3f"), ("map", "mAP", "6.3f"), ("roc_auc", "AUC", "6.3f"),
                               ("tpr@fpr=0.01", "TPR@1%", "7.3f"), ("ms_per_query", "ms/q", "7.1f")])
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

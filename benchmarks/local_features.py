"""Which local features and which geometric model verify best? Side by side, in one run.

    .venv/bin/python benchmarks/local_features.py [--form photo|catalogue-like|both]

On the real-pairs protocol, the top 20 candidates of coinmatch's default embedding are re-ranked
by inlier count with each feature (RootSIFT, SIFT, ORB; AKAZE where the OpenCV build has it) and each geometric model
(similarity by RANSAC; affine by USAC MAGSAC++). Reports recall@1, TPR at 1 % FPR of the verified
score (leave-one-out), and the milliseconds verification adds per query.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from common import WORK, format_table, pairs_manifests, save_results
from coinmatch import verify as v
from coinmatch.catalog.build import build_catalogue
from coinmatch.evaluation import metrics
from coinmatch.evaluation.protocol import load_query_images, read_queries
from coinmatch.prepare import prepare_array, prepare_photo
from coinmatch.search import Searcher
from coinmatch.segment import coin_mask

K = 20


def extractor(kind: str):
    if kind in ("rootsift", "sift"):
        sift = cv2.SIFT_create(nfeatures=v.N_FEATURES, contrastThreshold=0.02)
    elif kind == "akaze":
        det = cv2.AKAZE_create(threshold=0.0005)
    else:
        det = cv2.ORB_create(nfeatures=v.N_FEATURES, fastThreshold=10)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
    mask = coin_mask(v.SIDE, radius_fraction=0.96)

    def run(crop):
        if kind == "rootsift":
            return v.extract(crop)
        grey = clahe.apply(cv2.cvtColor(cv2.resize(crop, (v.SIDE, v.SIDE), interpolation=cv2.INTER_AREA),
                                        cv2.COLOR_RGB2GRAY))
        kps, desc = (sift if kind == "sift" else det).detectAndCompute(grey, mask)
        if desc is None:
            return v.LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
        return v.LocalFeatures(np.array([k.pt for k in kps], np.float32), desc)
    return run


def match(kind: str, geometry: str, q: v.LocalFeatures, cands: list[v.LocalFeatures]) -> list[int]:
    if kind == "rootsift":
        return [r.inliers for r in v.match_many(q, cands, geometry=geometry)]
    norm = cv2.NORM_L2 if kind == "sift" else cv2.NORM_HAMMING
    bf = cv2.BFMatcher(norm)
    out = []
    for c in cands:
        if len(q.descriptors) < 3 or len(c.descriptors) < 3:
            out.append(0)
            continue
        knn = bf.knnMatch(q.descriptors, c.descriptors, k=2)
        good = [m[0] for m in knn if len(m) == 2 and m[0].distance < v.RATIO * m[1].distance]
        qi = np.array([m.queryIdx for m in good], int)
        ci = np.array([m.trainIdx for m in good], int)
        out.append(v._fit(q, c, qi, ci, False, geometry).inliers)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--form", default="both")
    args = ap.parse_args()
    cat_csv, q_csv = pairs_manifests()
    root = WORK / "catalogue-local-features"
    build_catalogue(root, cat_csv, progress=False)
    searcher = Searcher(root)
    records = searcher.catalogue.images(range(len(searcher.catalogue)))
    queries = read_queries(q_csv, "coin_id")
    forms = ("photo", "catalogue-like") if args.form == "both" else (args.form,)
    rows = []
    for form in forms:
        images = load_query_images(queries, form, seed=0)
        prepared = [prepare_array(im, q.name) for q, im in zip(queries, images)]
        vecs = searcher.embedder.embed([p.crop for p in prepared])
        ranked = [searcher.matches_for(r) for r in searcher.candidates(vecs, K)]
        needed = sorted({m.row for r in ranked for m in r})
        crops = {row: prepare_photo(records[row].path).crop for row in needed}
        for kind in ("rootsift", "sift", "akaze", "orb"):
            if kind == "akaze" and not hasattr(cv2, "AKAZE_create"):
                print("AKAZE is not in this OpenCV build (OpenCV 5 moved it to opencv-contrib); skipped")
                continue
            ext = extractor(kind)
            cat_f = {row: ext(c) for row, c in crops.items()}
            for geometry in ("similarity", "affine-magsac"):
                ranks, pos, neg, t = [], [], [], 0.0
                for q, p, cands in zip(queries, prepared, ranked):
                    t0 = time.perf_counter()
                    inl = match(kind, geometry, ext(p.crop), [cat_f[m.row] for m in cands])
                    t += time.perf_counter() - t0
                    scores = [v.combined_score(m.score, n) for m, n in zip(cands, inl)]
                    order = np.argsort(scores)[::-1]
                    ids = [cands[i].id for i in order]
                    ranks.append(ids.index(q.true_id) + 1 if q.true_id in ids else 0)
                    pos += [s for m, s in zip(cands, scores) if m.id == q.true_id] or [-1.0]
                    neg.append(max(s for m, s in zip(cands, scores) if m.id != q.true_id))
                roc = metrics.open_set(np.array(pos), np.array(neg))
                rows.append({"features": kind, "geometry": geometry, "form": form,
                             "recall@1": metrics.recall_at(np.array(ranks), 1), "tpr@fpr=0.01": roc["tpr@fpr=0.01"],
                             "roc_auc": roc["roc_auc"], "ms_per_query": 1000 * t / len(queries)})
                print(rows[-1], flush=True)
    text = format_table(rows, [("features", "features", "<10"), ("geometry", "geometry", "<14"), ("form", "form", "<15"),
                               ("recall@1", "R@1", "6.3f"), ("tpr@fpr=0.01", "TPR@1%", "7.3f"),
                               ("roc_auc", "AUC", "6.3f"), ("ms_per_query", "ms/q", "7.1f")])
    print(text)
    save_results("local_features", rows, text)


if __name__ == "__main__":
    main()

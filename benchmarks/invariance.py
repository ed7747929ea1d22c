"""Rotation pooled or aligned, and which part of the catalogue-like form costs what.

    .venv/bin/python benchmarks/invariance.py [--backbone efficientnet_lite0] [--image-size 224]
        [--limit 2000] [--train 1300] [--colour] [--reuse] [--name invariance]

The grey ImageNet descriptor (as `--grey`; with `--colour`, the colour one) of every image is taken
at 16 angles (the crop turned by 360 k / 16 degrees, reflected at the border, one backbone pass
each): the euro real-pairs protocol (benchmarks/common.py) with its queries in several forms, the
held-out validation coins of `coinmatch train` (its split and its two fixed augmented views), and
``--train`` training coins as they are and in one augmented view (as benchmarks/frozen_descriptors.py).
Then, in seconds:

1. How to use the 16 angles, raw and after the learned whitening of `--loss whitening`:
   - pooled: the mean over angles, one vector per image (what `--rotations 16` does);
   - aligned: the catalogue image at one angle, the query at 16, the best angle wins
     (16x cheaper catalogue builds);
   - cyclic: all 16 angles of both, the best cyclic shift wins (16 vectors per catalogue image).
   Aligned and cyclic whitenings are fitted on angle-aligned pairs (each augmented view turned to
   the angle that best matches its coin).
2. The pooled whitened model on each part of the catalogue-like form alone (grey; rotated; 128 px)
   and together, so one sees which part costs recall.
The descriptors are kept in out/benchmarks/ (``--reuse`` reads them back instead of embedding again).
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from common import (SCORE_COLUMNS, WORK, euro_crops, format_table, save_results,
                    stored_descriptors, study_arguments, training_views, unit)
from coinmatch.align import cyclic_similarity
from coinmatch.evaluation.protocol import catalogue_like_angles, grey, load_query_images, rotate, shrink
from coinmatch.models.modelfile import ModelConfig, build_network
from coinmatch.models.runtime import resize_square
from coinmatch.prepare import prepare_array
from coinmatch.training.whitening import descriptor_embedder, learned_whitening

ANGLES = 16


# each part of protocol.catalogue_like alone, at its angles (seed 0, one draw per query); then all of it
PARTS = {
    "photo": lambda rgb, angle: rgb,
    "grey": lambda rgb, angle: grey(rgb),
    "rotated": lambda rgb, angle: rotate(rgb, angle),
    "128 px": lambda rgb, angle: shrink(rgb),
    "grey + rotated": lambda rgb, angle: rotate(grey(rgb), angle),
}
QUERY_FORMS = [*PARTS, "catalogue-like"]


class AngleEmbedder:
    """Per-angle descriptors: N x ANGLES x D, each row unit length."""

    def __init__(self, backbone: str, size: int, grey: bool = True):
        config = ModelConfig(backbone=backbone, grey=grey, rotations=1, image_size=size)
        self.size = size
        self.embedder = descriptor_embedder(build_network(config).eval(), config, "cpu")

    def turned(self, crop: np.ndarray) -> list[np.ndarray]:
        s = self.size
        crop = resize_square(crop, s)
        centre = (s / 2 - 0.5, s / 2 - 0.5)
        return [crop] + [cv2.warpAffine(crop, cv2.getRotationMatrix2D(centre, -360 * k / ANGLES, 1.0), (s, s),
                                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                         for k in range(1, ANGLES)]

    def __call__(self, crops: list[np.ndarray], what: str) -> np.ndarray:
        t = time.perf_counter()
        v = self.embedder.embed([r for c in crops for r in self.turned(c)], progress=True)
        print(f"{what}: {len(crops)} images x {ANGLES} angles in {time.perf_counter() - t:.0f} s", flush=True)
        return v.reshape(len(crops), ANGLES, -1)


def extract(backbone: str, size: int, limit: int, n_train: int, grey: bool) -> dict[str, np.ndarray]:
    embed = AngleEmbedder(backbone, size, grey)
    cat_ids, cat_crops, queries = euro_crops()
    out = {"cat_ids": cat_ids, "cat": embed(cat_crops, "euro catalogue"),
           "q_ids": np.array([q.true_id for q in queries])}
    photos = load_query_images(queries, "photo")
    angles = catalogue_like_angles(len(photos), seed=0)
    forms = {form: [make(rgb, a) for rgb, a in zip(photos, angles)] for form, make in PARTS.items()}
    forms["catalogue-like"] = load_query_images(queries, "catalogue-like", seed=0)
    for form, images in forms.items():
        out["q:" + form] = embed([prepare_array(im, q.name).crop for im, q in zip(images, queries)], form)
    for key, crops in training_views(size, limit, n_train).items():
        out[key] = embed(crops, key)
    return out


def pooled(a: np.ndarray) -> np.ndarray:
    return unit(a.mean(axis=1))


def aligned_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every angle of each coin with its augmented view turned to match it (the shift that fits angle 0 best)."""
    shift = np.einsum("nd,nkd->nk", x[:, 0], y).argmax(1)
    n = np.arange(len(x))
    return (np.concatenate([x[:, j] for j in range(ANGLES)]),
            np.concatenate([y[n, (shift + j) % ANGLES] for j in range(ANGLES)]))


def fit(x: np.ndarray, y: np.ndarray):
    p, m = learned_whitening(x, y, 512, 0.1)
    return lambda v: unit((v - m) @ p.T)


def similarities(q: np.ndarray, c: np.ndarray, matching: str) -> np.ndarray:
    """Query x catalogue scores from per-angle vectors (N x ANGLES x D, already transformed)."""
    if matching == "pooled":
        return pooled(q) @ pooled(c).T
    if matching == "aligned":
        return np.einsum("qkd,cd->qck", q, c[:, 0]).max(-1)
    return cyclic_similarity(q, c)


def recall(scores: np.ndarray, d: dict) -> float:
    return float(np.mean(d["cat_ids"][scores.argmax(1)] == d["q_ids"]))


def study(d: dict) -> tuple[list[dict], list[dict]]:
    per_angle = {k: unit(v) for k, v in d.items() if v.ndim == 3}
    x, y = per_angle["x"], per_angle["y"]
    transforms = {("pooled", "raw"): lambda v: v, ("pooled", "whitened"): fit(pooled(x), pooled(y))}
    aligned = fit(*aligned_pairs(x, y))
    for matching in ("aligned", "cyclic"):
        transforms[matching, "raw"], transforms[matching, "whitened"] = (lambda v: v), aligned
    matching_rows = []
    for (matching, how), t in transforms.items():
        if matching == "pooled" and how == "whitened":  # whiten the pooled vector, not each angle
            v = {k: pooled(a) for k, a in per_angle.items()}
            v = {k: t(a)[:, None] for k, a in v.items()}
        else:
            v = {k: t(a) for k, a in per_angle.items()}
        val = similarities(v["val_b"], v["val_a"], matching)
        matching_rows.append({"matching": matching, "descriptor": how,
                              "val P@1": float(np.mean(val.argmax(1) == np.arange(len(val)))),
                              "photo": recall(similarities(v["q:photo"], v["cat"], matching), d),
                              "catalogue-like": recall(similarities(v["q:catalogue-like"], v["cat"], matching), d)})
    white = transforms["pooled", "whitened"]
    cat = {"raw": pooled(per_angle["cat"]), "whitened": white(pooled(per_angle["cat"]))}
    form_rows = []
    for form in QUERY_FORMS:
        q = pooled(per_angle["q:" + form])
        form_rows.append({"query form": form, "raw": recall(q @ cat["raw"].T, d),
                          "whitened": recall(white(q) @ cat["whitened"].T, d)})
    return matching_rows, form_rows


def main() -> None:
    ap = study_arguments(__doc__.splitlines()[0], "invariance")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--colour", action="store_true", help="the colour descriptor instead of the grey one")
    args = ap.parse_args()
    tone = "colour" if args.colour else "grey"
    path = WORK / f"angles-{args.backbone}-{args.image_size}-{args.limit}-{args.train}{'-colour' if args.colour else ''}.npz"
    d, how = stored_descriptors(path, args.reuse,
                                lambda: extract(args.backbone, args.image_size, args.limit, args.train, not args.colour))
    print(f"{args.backbone}, {args.image_size} px, {tone}: per-angle descriptors {how}", flush=True)
    matching_rows, form_rows = study(d)
    text = (format_table(matching_rows, [("matching", "matching", "<9"), ("descriptor", "descriptor", "<11"),
                                         *SCORE_COLUMNS])
            + "\n\npooled, by query form (euro recall@1)\n"
            + format_table(form_rows, [("query form", "query form", "<16"), ("raw", "raw", "6.3f"),
                                       ("whitened", "whitened", "9.3f")]))
    print(text)
    save_results(args.name, matching_rows + form_rows, text)


if __name__ == "__main__":
    main()

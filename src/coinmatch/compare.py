"""Two photos, one coin? The evidence drawn: both coins side by side with their inlier matches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from coinmatch import verify as verification
from coinmatch.align import aligned_score, cyclic_similarity
from coinmatch.images import save_rgb
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_any


def draw_matches(crop_a: np.ndarray, crop_b: np.ndarray, v: verification.Verification, side: int = 400) -> np.ndarray:
    s = verification.SIDE
    a = cv2.resize(crop_a, (side, side), interpolation=cv2.INTER_AREA)
    b = cv2.resize(crop_b, (side, side), interpolation=cv2.INTER_AREA)
    canvas = np.full((side + 40, 2 * side + 20, 3), 255, np.uint8)
    canvas[40:, :side] = a
    canvas[40:, side + 20:] = b
    k = side / s
    if v.pairs is not None:
        rng = np.random.default_rng(0)
        for xq, yq, xc, yc in v.pairs:
            colour = tuple(int(c) for c in rng.integers(60, 256, 3))
            p = (int(xq * k), int(yq * k) + 40)
            q = (int(xc * k) + side + 20, int(yc * k) + 40)
            cv2.circle(canvas, p, 3, colour, -1, cv2.LINE_AA)
            cv2.circle(canvas, q, 3, colour, -1, cv2.LINE_AA)
            cv2.line(canvas, p, q, colour, 1, cv2.LINE_AA)
    verdict = f"{v.inliers} inliers"
    if v.rotation is not None:
        verdict += f", rotation {v.rotation:.0f} deg, scale {v.scale:.2f}"
    cv2.putText(canvas, verdict, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    return canvas


def compare_photos(photo_a, photo_b, out: str | Path | None = None,
                   embedder: Embedder | None = None) -> dict:
    """The evidence that two photos show one coin, scored as search scores a verified candidate: the embedding's
    cosine (with a model of several angles, its mean with the aligned cosine, as search gives it), plus inliers."""
    a, b = prepare_any(photo_a), prepare_any(photo_b)
    v = verification.match(verification.extract(a.crop), verification.extract(b.crop), keep_pairs=True)
    embedder = embedder or Embedder()
    vectors, angles = embedder.embed_with_angles([a.crop, b.crop])
    embedding = {"cosine": float(vectors[0] @ vectors[1])}
    score = embedding["cosine"]
    if angles is not None:
        embedding["aligned"] = float(cyclic_similarity(angles[:1], angles[1:])[0, 0])
        score = aligned_score(score, embedding["aligned"])
    if out is not None:
        save_rgb(draw_matches(a.crop, b.crop, v), out)
    return {"a": a.source, "b": b.source, "inliers": v.inliers, "matches": v.matches,
            "rotation": None if v.rotation is None else round(v.rotation, 1),
            "scale": None if v.scale is None else round(v.scale, 3), **embedding,
            "score": verification.combined_score(score, v.inliers), "notes": a.notes + b.notes}

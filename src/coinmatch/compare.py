"""Two photos, one coin? The evidence drawn: both coins side by side with their inlier matches, and the query
turned and scaled onto the candidate by the verification's fit, to lay one over the other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from coinmatch import verify as verification
from coinmatch.align import aligned_score, cyclic_similarity
from coinmatch.images import save_rgb, square_resized
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_any


MAX_DRAWN = 80  # inlier lines drawn at most


def draw_matches(crop_a: np.ndarray, crop_b: np.ndarray, v: verification.Verification, side: int = 400,
                 pairs: np.ndarray | None = None) -> np.ndarray:
    """Both crops side by side, a line between the two ends of each inlier (``pairs``: K x 4 in verification
    pixels, default ``v.pairs``), the inliers and the fit written above."""
    s = verification.SIDE
    a, b = square_resized(crop_a, side), square_resized(crop_b, side)
    top, gap, text = round(side / 10), round(side / 20), side / 500  # the header, the gap, the font: as side scales
    canvas = np.full((side + top, 2 * side + gap, 3), 255, np.uint8)
    canvas[top:, :side] = a
    canvas[top:, side + gap:] = b
    k = side / s
    pairs = v.pairs if pairs is None else pairs
    verdict = f"{v.inliers} inliers"
    if pairs is not None:
        rng = np.random.default_rng(0)
        if len(pairs) > MAX_DRAWN:  # a readable drawing: an even sample of the lines, the count said
            pairs = pairs[rng.choice(len(pairs), MAX_DRAWN, replace=False)]
            verdict += f" ({MAX_DRAWN} drawn)"
        for xq, yq, xc, yc in pairs:
            colour = tuple(int(c) for c in rng.integers(60, 256, 3))
            p = (int(xq * k), int(yq * k) + top)
            q = (int(xc * k) + side + gap, int(yc * k) + top)
            cv2.circle(canvas, p, 3, colour, -1, cv2.LINE_AA)
            cv2.circle(canvas, q, 3, colour, -1, cv2.LINE_AA)
            cv2.line(canvas, p, q, colour, 1, cv2.LINE_AA)
    if v.rotation is not None:
        verdict += f", rotation {v.rotation:.0f} deg, scale {v.scale:.2f}"
    cv2.putText(canvas, verdict, (round(side / 40), round(top * 0.7)), cv2.FONT_HERSHEY_SIMPLEX, text, (0, 0, 0),
                max(1, round(2 * text)), cv2.LINE_AA)
    return canvas


@dataclass
class Evidence:
    """What a numismatist looks at to decide that two crops show one coin (all images ``side`` px square, RGB)."""

    verification: verification.Verification
    query: np.ndarray  # the query's crop as photographed
    candidate: np.ndarray  # the candidate's crop
    aligned: np.ndarray | None  # the query turned and scaled onto the candidate (None where no fit was accepted)
    matches: np.ndarray  # the aligned query (or the query) beside the candidate, the inliers joined
    row: int | None = None  # the catalogue image compared, where the candidate is a catalogue entry


def evidence(query_crop: np.ndarray, candidate_crop: np.ndarray,
             query_features: verification.LocalFeatures | None = None,
             candidate_features: verification.LocalFeatures | None = None, side: int = 400) -> Evidence:
    """The evidence for one candidate: the verification (with the candidate's stored features, it is the one search
    gave), the query turned onto the candidate by the fitted similarity, and the matches drawn between them."""
    qf = query_features if query_features is not None else verification.extract(query_crop)
    cf = candidate_features if candidate_features is not None else verification.extract(candidate_crop)
    v = verification.match(qf, cf, keep_pairs=True)
    query, candidate = square_resized(query_crop, side), square_resized(candidate_crop, side)
    if v.matrix is None or not v.inliers:
        return Evidence(v, query, candidate, None, draw_matches(query_crop, candidate_crop, v, side))
    m = v.matrix.astype(np.float64).copy()
    m[:, 2] *= side / verification.SIDE  # the same similarity in display pixels
    aligned = cv2.warpAffine(query, m, (side, side), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
    ends = v.pairs[:, :2] @ v.matrix[:, :2].T + v.matrix[:, 2]  # the query's ends, moved with it
    drawn = draw_matches(aligned, candidate_crop, v, side, np.hstack([ends, v.pairs[:, 2:]]))
    return Evidence(v, query, candidate, aligned, drawn)


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

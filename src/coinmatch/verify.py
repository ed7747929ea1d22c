"""Verification: is a candidate the very same coin? Local features under a geometric model.

Die studies compare coins by their shared details: die flaws, wear, scratches, flan shape.
Here each coin crop gets RootSIFT keypoints restricted to the coin by its circular mask, on a
contrast-normalised (CLAHE) grey image so light and toning matter less. A query is matched to
a candidate by nearest neighbours with Lowe's ratio test, then a similarity transform
(rotation, scale, shift) is fitted robustly (RANSAC; or an affine fit by USAC MAGSAC++). Both crops are
centred on their coin and scaled to its size, so a true transform is a rotation about the
centre at a scale near 1; fits that break this are rejected. The inlier count is the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from coinmatch.segment import coin_mask

SIDE = 256  # crops are resized to this before feature extraction
N_FEATURES = 600
RATIO = 0.85
METHOD = "rootsift-v1"
_sift = None
_clahe = None


@dataclass
class LocalFeatures:
    keypoints: np.ndarray  # N x 2 float32, in SIDE x SIDE crop pixels
    descriptors: np.ndarray  # N x 128 float32 RootSIFT (unit L2)


@dataclass
class Verification:
    inliers: int
    matches: int  # tentative matches after the ratio test
    rotation: float | None  # degrees, query -> candidate
    scale: float | None
    pairs: np.ndarray | None = None  # inlier pairs: K x 4 (xq, yq, xc, yc) in SIDE pixels
    matrix: np.ndarray | None = None  # the 2 x 3 similarity query -> candidate in SIDE pixels, when accepted


def _tools():
    global _sift, _clahe
    if _sift is None:
        _sift = cv2.SIFT_create(nfeatures=N_FEATURES, contrastThreshold=0.02)
        _clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
    return _sift, _clahe


def extract(crop: np.ndarray) -> LocalFeatures:
    """RootSIFT features of a square coin crop, inside the coin only."""
    sift, clahe = _tools()
    interp = cv2.INTER_AREA if crop.shape[0] > SIDE else cv2.INTER_CUBIC
    grey = cv2.cvtColor(cv2.resize(crop, (SIDE, SIDE), interpolation=interp), cv2.COLOR_RGB2GRAY)
    grey = clahe.apply(grey)
    kps, desc = sift.detectAndCompute(grey, coin_mask(SIDE, radius_fraction=0.96))
    if desc is None or len(kps) == 0:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    pts = np.array([k.pt for k in kps], np.float32)
    return LocalFeatures(pts, rootsift(desc))


def rootsift(desc: np.ndarray) -> np.ndarray:
    """SIFT descriptors as RootSIFT: L1-normalised, then square-rooted (float32)."""
    return np.sqrt(desc / (desc.sum(axis=1, keepdims=True) + 1e-7)).astype(np.float32)


def to_blob(f: LocalFeatures) -> tuple[str, bytes, bytes]:
    """Compact storage: keypoints as float16, descriptors quantised to uint8."""
    q = np.clip(np.round(f.descriptors * 255.0), 0, 255).astype(np.uint8)
    return METHOD, f.keypoints.astype(np.float16).tobytes(), q.tobytes()


def from_blob(method: str, keypoints: bytes, descriptors: bytes) -> LocalFeatures:
    if method != METHOD:
        raise ValueError(f"features made by {method}, this coinmatch uses {METHOD}")
    pts = np.frombuffer(keypoints, np.float16).astype(np.float32).reshape(-1, 2)
    desc = np.frombuffer(descriptors, np.uint8).astype(np.float32).reshape(-1, 128) / 255.0
    return LocalFeatures(pts, desc)


def extract_features_blob(crop: np.ndarray) -> tuple[str, bytes, bytes]:
    return to_blob(extract(crop))


def _ratio_tests(sims: np.ndarray, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Lowe's ratio test for every candidate at once.

    ``sims``: N x C x M similarities of N query descriptors to C candidates' descriptors (padded
    with zeros to M; RootSIFT similarities are >= 0, so padding never wins). For unit descriptors,
    distance^2 = 2 - 2 sim.
    """
    best = sims.argmax(axis=2)  # N x C
    s1 = np.take_along_axis(sims, best[..., None], axis=2)[..., 0]
    np.put_along_axis(sims, best[..., None], -np.inf, axis=2)
    s2 = sims.max(axis=2)
    d1 = np.sqrt(np.maximum(2 - 2 * s1, 0))
    d2 = np.sqrt(np.maximum(2 - 2 * s2, 0))
    keep = d1 < RATIO * d2
    out = []
    for c, n in enumerate(sizes):
        qi = np.nonzero(keep[:, c] & (best[:, c] < n))[0]
        out.append((qi, best[qi, c]))
    return out


GEOMETRY = "similarity"  # or "affine-magsac"; benchmarks/local_features.py compares them


def _fit(query: LocalFeatures, cand: LocalFeatures, qi: np.ndarray, ci: np.ndarray, keep_pairs: bool,
         geometry: str | None = None) -> Verification:
    """A robust fit constrained to the coin's centre and size.

    ``similarity``: rotation, scale and shift (4 degrees of freedom) by RANSAC, since OpenCV
    offers no USAC method for this model. ``affine-magsac``: a full affine transform by USAC
    MAGSAC++, accepted only when it is close to a similarity (a camera tilt of a few degrees).
    """
    geometry = geometry or GEOMETRY
    if len(qi) < 3:
        return Verification(0, int(len(qi)), None, None)
    src, dst = query.keypoints[qi], cand.keypoints[ci]
    if geometry == "affine-magsac":
        M, mask = cv2.estimateAffine2D(src, dst, method=cv2.USAC_MAGSAC, ransacReprojThreshold=SIDE * 0.02,
                                       maxIters=2000, confidence=0.995)
    else:
        M, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=SIDE * 0.02,
                                              maxIters=2000, confidence=0.995, refineIters=10)
    if M is None or mask is None:
        return Verification(0, int(len(qi)), None, None)
    sv = np.linalg.svd(M[:, :2], compute_uv=False)
    scale = float(np.sqrt(sv[0] * sv[1]))
    rotation = float(np.degrees(np.arctan2(M[1, 0] - M[0, 1], M[0, 0] + M[1, 1])))
    centre = np.array([SIDE / 2, SIDE / 2])
    moved = M[:, :2] @ centre + M[:, 2]
    # same coin, both crops centred and scaled to it: the centre stays put, the scale near 1, no strong shear
    if (not (0.7 <= scale <= 1.45) or sv[0] / max(sv[1], 1e-9) > 1.3
            or np.linalg.norm(moved - centre) > 0.18 * SIDE):
        return Verification(0, int(len(qi)), rotation, scale)
    inl = mask.ravel().astype(bool)
    pairs = np.hstack([src[inl], dst[inl]]) if keep_pairs else None
    return Verification(int(inl.sum()), int(len(qi)), rotation, scale, pairs, M)


def match(query: LocalFeatures, cand: LocalFeatures, keep_pairs: bool = False) -> Verification:
    """Ratio-test matches, then a robust similarity fit constrained to the coin's centre and size."""
    return match_many(query, [cand], keep_pairs)[0]


def match_many(query: LocalFeatures, cands: list[LocalFeatures], keep_pairs: bool = False,
               geometry: str | None = None) -> list[Verification]:
    """:func:`match` against many candidates: one matrix product and one ratio test for them all."""
    sizes = [len(c.descriptors) for c in cands]
    if len(query.descriptors) < 3 or not cands or max(sizes) < 2:
        return [Verification(0, 0, None, None) for _ in cands]
    padded = np.zeros((len(cands), max(sizes), query.descriptors.shape[1]), np.float32)
    for c, f in enumerate(cands):
        padded[c, : sizes[c]] = f.descriptors
    sims = np.einsum("nd,cmd->ncm", query.descriptors, padded, optimize=True)
    out = []
    for c, n, (qi, ci) in zip(cands, sizes, _ratio_tests(sims, sizes)):
        out.append(_fit(query, c, qi, ci, keep_pairs, geometry) if n >= 3 else Verification(0, 0, None, None))
    return out


INLIER_CAP = 40


def combined_score(cosine: float, inliers: int) -> float:
    """One score from the embedding's cosine and the inlier count: cosine plus up to 1.0 for inliers,
    saturating at INLIER_CAP, so geometric evidence dominates the ranking. Its threshold for a
    decision is set by calibration (``coinmatch calibrate --verify``), like the cosine's."""
    return float(cosine + min(inliers, INLIER_CAP) / INLIER_CAP)

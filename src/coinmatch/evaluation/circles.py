"""How well the coin finder's circles agree between two real photographs of one coin.

There is no drawn ground truth for where a coin lies in a photo, but two photos of the same coin give one: the map
from one photo to the other, fitted by RANSAC to RootSIFT matches on the coin, carries the circle found in the first
photo into the second, where the finder should find that very circle. Agreement is what retrieval needs (the query
and the catalogue entry cropped alike), and unlike a synthetic copy of a photo it includes other light, another
camera and another background.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from coinmatch.segment import Circle
from coinmatch.verify import rootsift

MATCH_SIDE = 600  # photos are scaled so that their longer side is at most this (small ones enlarged up to 2x)
MIN_INLIERS = 20
DISC = 1.15  # features are taken within this many radii of each circle that is compared
TOLERANCE = 0.0075  # RANSAC's reprojection tolerance, of the second photo's longer side (1.5 px at least)


@dataclass
class PhotoMap:
    matrix: np.ndarray  # 2 x 3 affine map, first photo's pixels -> second photo's pixels
    inliers: int

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def carry(self, c: Circle) -> Circle:
        """Circle ``c`` of the first photo, carried into the second (its radius by the map's scale)."""
        x, y = self.matrix[:, :2] @ np.array([c.x, c.y]) + self.matrix[:, 2]
        return Circle(float(x), float(y), self.scale * c.r)


@dataclass
class Disagreement:
    centre: float  # distance between the carried centre and the found one, in the found circle's radii
    radius: float  # |log| of the found radius over the carried one

    @property
    def worst(self) -> float:
        return max(self.centre, self.radius)


_sift = None


def _features(rgb: np.ndarray, circles: list[Circle]) -> tuple[np.ndarray, np.ndarray]:
    global _sift
    if _sift is None:
        _sift = cv2.SIFT_create(nfeatures=2000, contrastThreshold=0.02)
    s = min(2.0, MATCH_SIDE / max(rgb.shape[:2]))
    grey = cv2.cvtColor(cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC),
                        cv2.COLOR_RGB2GRAY)
    mask = np.zeros(grey.shape, np.uint8)
    for c in circles:
        cv2.circle(mask, (round(c.x * s), round(c.y * s)), round(DISC * c.r * s), 255, -1)
    grey = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(grey)
    kps, desc = _sift.detectAndCompute(grey, mask)
    if desc is None or len(kps) < 3:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    return np.array([k.pt for k in kps], np.float32) / s, rootsift(desc)


def photo_map(a: np.ndarray, b: np.ndarray, circles_a: list[Circle], circles_b: list[Circle]) -> PhotoMap | None:
    """The affine map from photo ``a`` to photo ``b`` of the same coin, from RootSIFT matches within ``DISC`` radii of
    the given circles (every finder compared, so that the map depends on none of them), fitted by RANSAC with a
    fixed seed; None when fewer than ``MIN_INLIERS`` matches agree."""
    (pa, da), (pb, db) = _features(a, circles_a), _features(b, circles_b)
    if len(da) < 3 or len(db) < 3:
        return None
    knn = cv2.BFMatcher().knnMatch(da, db, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    src, dst = pa[[g.queryIdx for g in good]], pb[[g.trainIdx for g in good]]
    cv2.setRNGSeed(0)
    tolerance = max(1.5, TOLERANCE * max(b.shape[:2]))
    matrix, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=tolerance,
                                        maxIters=5000, confidence=0.999, refineIters=20)
    if matrix is None or mask is None or int(mask.sum()) < MIN_INLIERS:
        return None
    return PhotoMap(matrix, int(mask.sum()))


def disagreement(m: PhotoMap, a: Circle, b: Circle) -> Disagreement:
    """How far circle ``b`` (found in the second photo) lies from circle ``a`` (found in the first) carried by ``m``."""
    c = m.carry(a)
    return Disagreement(float(np.hypot(c.x - b.x, c.y - b.y) / b.r), float(abs(np.log(b.r / c.r))))

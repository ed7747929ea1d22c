"""Image-quality warnings for a coin crop: overexposed, underexposed, blurred, too small.

A provenance researcher should hear that a photo is too poor to decide on, rather than get a
silent guess. The checks look at the coin itself (inside its circle), not the background.
"""

from __future__ import annotations

import cv2
import numpy as np

from coinmatch.segment import coin_mask

MIN_COIN_PIXELS = 64  # coin diameter below which detail is gone
CLIPPED_HIGH = 0.10  # fraction of the coin at >= 245 in every channel
CLIPPED_LOW = 0.5  # fraction of the coin at <= 12
SHARPNESS_MIN = 12.0  # variance of the Laplacian at 256 px


def quality_warnings(crop: np.ndarray, coin_diameter: float | None = None) -> list[str]:
    side = crop.shape[0]
    warnings = []
    diameter = coin_diameter if coin_diameter is not None else side
    if diameter < MIN_COIN_PIXELS:
        warnings.append(f"too small: the coin is {diameter:.0f} px across (at least {MIN_COIN_PIXELS} wanted)")
    small = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA if side > 256 else cv2.INTER_LINEAR)
    inside = coin_mask(256, radius_fraction=0.9) > 0
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    coin = small[inside]
    high = float(np.mean(coin.min(axis=1) >= 245))
    low = float(np.mean(coin.max(axis=1) <= 12))
    if high > CLIPPED_HIGH:
        warnings.append(f"overexposed: {high:.0%} of the coin is blown out to white")
    if low > CLIPPED_LOW:
        warnings.append(f"underexposed: {low:.0%} of the coin is black")
    sharp = float(cv2.Laplacian(grey, cv2.CV_64F)[inside].var())
    if sharp < SHARPNESS_MIN and high <= CLIPPED_HIGH:
        warnings.append(f"blurred: little fine detail (sharpness {sharp:.0f}, below {SHARPNESS_MIN:.0f})")
    return warnings

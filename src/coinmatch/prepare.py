"""Photo -> coin crop: safe loading, then coin finding. The first step of every path through coinmatch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coinmatch.images import load_rgb
from coinmatch.segment import CoinLocation, crop_coin, locate_coin


@dataclass
class PreparedCoin:
    crop: np.ndarray  # square uint8 RGB crop centred on the coin, background kept
    location: CoinLocation  # in the loaded image's pixels
    source: str  # path or name, for messages

    @property
    def notes(self) -> list[str]:
        return [self.location.note] if self.location.note else []


def prepare_array(rgb: np.ndarray, source: str = "<array>", find_coin: bool = True) -> PreparedCoin:
    if find_coin:
        loc = locate_coin(rgb)
    else:
        from coinmatch.segment import Circle

        h, w = rgb.shape[:2]
        loc = CoinLocation(Circle(w / 2, h / 2, min(h, w) / 2), False, "whole-image", 0.0)
    # The embedding sees the crop with its background: masking it hurt retrieval when measured on the
    # euro pairs (recall@1 0.976 unmasked; 0.845 with the coin's median colour, 0.762 grey, 0.845 black).
    # The mask is used where it helps: local features and training backgrounds.
    return PreparedCoin(crop_coin(rgb, loc, mask=False), loc, source)


def prepare_photo(source: str | Path | bytes, name: str | None = None, find_coin: bool = True) -> PreparedCoin:
    label = name or (str(source) if not isinstance(source, bytes) else "<uploaded image>")
    return prepare_array(load_rgb(source, name=label), label, find_coin=find_coin)

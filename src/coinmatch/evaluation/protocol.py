"""Query sets: read a query manifest, and make the 'catalogue-like' form of real photographs.

Catalogue-like: an old auction catalogue shows a coin in black and white, at any angle, small.
Each query is turned grey, rotated by a random angle and shrunk to 128 px, with a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from coinmatch.catalog.manifest import read_manifest
from coinmatch.images import load_rgb


@dataclass
class Query:
    name: str  # as written in the manifest
    path: Path
    true_id: str
    side: str | None = None


def read_queries(manifest: str | Path, id_column: str) -> list[Query]:
    """One query per image (several may show one coin); the id column names the coin: a catalogue entry's id, or
    the value of the catalogue's own column of that name (:func:`coinmatch.evaluation.run.truth`)."""
    from coinmatch.catalog.manifest import require_column

    entries = read_manifest(manifest, id_column=None, check_files=True, per_row=True)
    require_column(manifest, id_column, "--id-column")
    out = []
    for e in entries:
        true_id = e.id if id_column == "id" else e.metadata.get(id_column, "")
        for f in e.faces:
            out.append(Query(f.relpath, f.path, true_id, f.side))
    return out


def grey(rgb: np.ndarray) -> np.ndarray:
    """Luminance, as three equal channels."""
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def rotate(rgb: np.ndarray, angle: float) -> np.ndarray:
    """Turned by ``angle`` degrees about the centre, same size, edges replicated."""
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def shrink(rgb: np.ndarray, size: int = 128) -> np.ndarray:
    """Resized to ``size`` px on the long side."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def catalogue_like_at(rgb: np.ndarray, angle: float, size: int = 128) -> np.ndarray:
    """Grey, rotated by ``angle`` degrees about the centre, shrunk to ``size`` px on the long side."""
    return shrink(rotate(grey(rgb), angle), size)


def catalogue_like(rgb: np.ndarray, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Grey, rotated by a random angle about the centre (one draw of ``rng``), shrunk to ``size`` px on the long
    side."""
    return catalogue_like_at(rgb, float(rng.uniform(0, 360)), size)


def catalogue_like_angles(n: int, seed: int = 0) -> list[float]:
    """The angles by which ``load_query_images(..., "catalogue-like", seed)`` turns its ``n`` queries, in order."""
    rng = np.random.default_rng(seed)
    return [float(rng.uniform(0, 360)) for _ in range(n)]


def load_query_images(queries: list[Query], form: str = "photo", seed: int = 0) -> list[np.ndarray]:
    images = [load_rgb(q.path) for q in queries]
    if form == "photo":
        return images
    if form == "catalogue-like":
        return [catalogue_like_at(im, a) for im, a in zip(images, catalogue_like_angles(len(images), seed))]
    raise ValueError(f"unknown query form {form!r}: photo or catalogue-like")

"""Training images decoded once, coin found and cropped, resized once, held in memory as uint8.

The research's lessons: reading from disk and augmenting at full size were the bottlenecks.
Exact duplicates (same pixels) and perceptual duplicates (same 64-bit pHash of the crop) are
dropped, so one coin scanned twice does not become two classes that the loss pushes apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image
from tqdm import tqdm

from coinmatch import CoinmatchError
from coinmatch.catalog.manifest import read_manifest
from coinmatch.images import load_rgb
from coinmatch.prepare import prepare_array

MARGIN = 0.04  # crop_coin's margin: the coin's radius in a crop of side S is S / 2 / (1 + MARGIN)


@dataclass
class TrainingCache:
    images: np.ndarray  # N x S x S x 3 uint8, coin centred
    labels: np.ndarray  # N int64: one class per image (one physical coin face)
    types: np.ndarray  # N int64: the type column's category (-1 when absent)
    names: list[str]  # image paths, for messages
    type_names: list[str] = field(default_factory=list)
    dropped_duplicates: list[tuple[str, str]] = field(default_factory=list)  # (dropped, kept)
    skipped: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.images)

    def plain(self, size: int, start: int = 0, stop: int | None = None) -> list[np.ndarray]:
        """Cached coins ``start:stop`` as they are, resized to the network's ``size`` (no augmentation)."""
        return [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in self.images[start:stop]]

    def subset(self, idx: np.ndarray) -> "TrainingCache":
        return TrainingCache(self.images[idx], self.labels[idx], self.types[idx], [self.names[i] for i in idx],
                             self.type_names)

    @classmethod
    def merge(cls, caches: list["TrainingCache"]) -> "TrainingCache":
        types: list[str] = []
        remapped = []
        for c in caches:
            mapping = {}
            for i, t in enumerate(c.type_names):
                if t not in types:
                    types.append(t)
                mapping[i] = types.index(t)
            remapped.append(np.array([mapping.get(int(t), -1) for t in c.types], np.int64))
        return cls(np.concatenate([c.images for c in caches]), np.arange(sum(len(c) for c in caches)),
                   np.concatenate(remapped), [n for c in caches for n in c.names], types,
                   [d for c in caches for d in c.dropped_duplicates], [s for c in caches for s in c.skipped])


def load_cache(manifest: str | Path, size: int, type_column: str | None = None, dedupe: bool = True,
               progress: bool = True, limit: int | None = None) -> TrainingCache:
    """Read every image of a manifest (each row its own class) into memory at ``size`` px."""
    entries = read_manifest(manifest, id_column=None)
    faces = [(e, f) for e in entries for f in e.faces]
    if limit:
        faces = faces[:limit]
    images, types, names, skipped, dropped = [], [], [], [], []
    type_names: list[str] = []
    seen_pixels: dict[str, str] = {}
    seen_hash: dict[str, str] = {}
    for entry, face in tqdm(faces, desc=f"caching {Path(manifest).name}", unit="img", disable=not progress):
        try:
            rgb = load_rgb(face.path)
        except CoinmatchError as exc:
            skipped.append(str(exc))
            continue
        crop = prepare_array(rgb, str(face.path)).crop
        small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC)
        if dedupe:  # on the whole photo: the crop would move with the coin finder's jitter
            digest = hashlib.sha1(rgb.tobytes()).hexdigest()
            ph = str(imagehash.phash(Image.fromarray(rgb), hash_size=8))
            twin = seen_pixels.get(digest) or seen_hash.get(ph)
            if twin is not None:
                dropped.append((face.relpath, twin))
                continue
            seen_pixels[digest] = face.relpath
            seen_hash[ph] = face.relpath
        t = entry.metadata.get(type_column, "") if type_column else ""
        if type_column and t:
            if t not in type_names:
                type_names.append(t)
            types.append(type_names.index(t))
        else:
            types.append(-1)
        images.append(small)
        names.append(face.relpath)
    if not images:
        raise CoinmatchError(f"{manifest}: no usable training images")
    return TrainingCache(np.stack(images), np.arange(len(images)), np.array(types, np.int64), names, type_names,
                         dropped, skipped)

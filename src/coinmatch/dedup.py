"""Duplicates in a training set, an archive or a folder: exact copies and near copies of one photograph. Never
deletes anything.

- **exact**: the same pixels once decoded, whatever the file format (SHA-1 of the RGB pixels).
- **near**: one photograph re-compressed, resized, turned, cropped or made grey. Each photo is compared whole
  (shrunk into a square), not by its coin's crop, which moves with the coin finder from copy to copy. Candidates
  come from two places: a perceptual hash at four quarter turns (a 64-bit pHash, near in Hamming distance), and
  the model's vector (its nearest neighbours; the default model is grey and turns with the coin). A candidate is
  confirmed when, the two laid one on the other by the local features' fit, a large share of the keypoints agree
  (``MIN_SHARE`` of the smaller set) and the grey pixels correlate (``MIN_CORRELATION``, in the middle).

Measured on real photos (`benchmarks/dedup.py`: 12 demo photos copied in each kind, the 24 demo coins' two
photographs, each of 60 photos against the other coins of its type): every copy is grouped (share 0.09-0.99,
correlation 0.89-1.00); no other coin of the type is (share at most 0.06, correlation at most 0.70), die-mates
included. Two photographs of one coin taken seconds apart under the same light are mostly grouped too (22 of 24
demo pairs): near-identical photographs count as near duplicates. The same coin in another photograph (another
light, another sale) is :mod:`coinmatch.link`'s work.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image

from coinmatch import CoinmatchError
from coinmatch import verify as verification
from coinmatch.images import load_rgb
from coinmatch.segment import coin_mask

log = logging.getLogger(__name__)
MIN_SHARE = 0.05  # inliers over the smaller keypoint set
MIN_CORRELATION = 0.85  # grey pixels in the middle of the two, one laid on the other
HASH_DISTANCE = 10  # of 64 bits: a pHash candidate
NEIGHBOURS = 5  # nearest by the model's vector: candidates


def pixel_digest(rgb: np.ndarray) -> str:
    """The exact-duplicate key: the decoded pixels' SHA-1 (and their shape)."""
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def photo_hash(rgb: np.ndarray) -> str:
    """The quick near-duplicate key of training and catalogue builds: the whole photo's 64-bit pHash (the whole
    photo, not the crop, which moves with the coin finder's jitter)."""
    return str(imagehash.phash(Image.fromarray(rgb), hash_size=8))


def crop_hashes(square_rgb: np.ndarray) -> list[int]:
    """The 64-bit pHash of a photo's grey square (:func:`square`) at each quarter turn."""
    grey = Image.fromarray(cv2.cvtColor(square_rgb, cv2.COLOR_RGB2GRAY))
    return [int(str(imagehash.phash(grey.rotate(90 * k), hash_size=8)), 16) for k in range(4)]


@dataclass
class Photo:
    name: str  # as the manifest or folder gives it
    path: Path
    pixels: int  # width x height, to keep the largest of a group
    digest: str
    hashes: list[int]
    grey: np.ndarray  # the whole photo as a SIDE x SIDE grey square (see square)
    features: tuple[str, bytes, bytes]  # stored form of the local features


@dataclass
class Duplicates:
    photos: list[Photo]
    groups: list[list[tuple[int, str]]]  # each: (photo index, "exact" or "near"), the largest photo first
    skipped: list[str] = field(default_factory=list)  # unreadable files, with why

    def rows(self) -> list[dict]:
        """groups.csv: one row per photo that has a duplicate."""
        return [{"group": g, "image": self.photos[i].name, "kind": kind}
                for g, members in enumerate(self.groups, 1) for i, kind in members]

    def dropped(self) -> set[str]:
        """The photos a clean set leaves out: all but the largest of each group."""
        return {self.photos[i].name for members in self.groups for i, _ in members[1:]}


def square(rgb: np.ndarray, side: int = verification.SIDE) -> np.ndarray:
    """The whole photo shrunk into a ``side`` square, centred on black: copies are compared whole, not by their
    coin's crop, which moves with the coin finder from one copy to the next."""
    h, w = rgb.shape[:2]
    k = side / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))),
                       interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    out = np.zeros((side, side, 3), np.uint8)
    y, x = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def examine(name: str, path: Path) -> Photo:
    rgb = load_rgb(path, name=name)
    with Image.open(path) as header:  # the file's own size: the loader shrinks photos over 2048 px
        width, height = header.size
    whole = square(rgb)
    return Photo(name, path, width * height, pixel_digest(rgb), crop_hashes(whole),
                 cv2.cvtColor(whole, cv2.COLOR_RGB2GRAY), verification.to_blob(verification.extract(whole)))


def same_photograph(a: Photo, b: Photo) -> bool:
    """Whether ``b`` is a near copy of ``a``'s photograph (see the module's docstring)."""
    fa, fb = verification.from_blob(*a.features), verification.from_blob(*b.features)
    v = verification.match(fa, fb)
    smaller = min(len(fa.keypoints), len(fb.keypoints))
    if v.matrix is None or not smaller or v.inliers < MIN_SHARE * smaller:
        return False
    side = verification.SIDE
    laid = cv2.warpAffine(a.grey.astype(np.float32), v.matrix, (side, side))
    covered = cv2.warpAffine(np.ones((side, side), np.float32), v.matrix, (side, side)) > 0.99
    inside = (coin_mask(side, radius_fraction=0.8) > 0) & covered
    if inside.sum() < 0.25 * side * side:
        return False
    x, y = laid[inside] - laid[inside].mean(), b.grey[inside].astype(np.float32) - b.grey[inside].mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum() + 1e-9)) >= MIN_CORRELATION


def find_duplicates(photos: list[tuple[str, Path]], model: str | None = None, neighbours: int = NEIGHBOURS,
                    on_progress: Callable[[int, int], None] | None = None) -> Duplicates:
    """Exact and near duplicates among (name, path) photos. ``model``: the model whose vectors propose candidates
    (a model file, ``builtin:...``, or None for the default)."""
    from coinmatch.models.runtime import Embedder

    examined, skipped, crops = [], [], []
    for i, (name, path) in enumerate(photos, 1):
        try:
            p = examine(name, Path(path))
        except CoinmatchError as exc:
            skipped.append(str(exc))
            log.warning("skipped: %s", exc)
        else:
            examined.append(p)
            crops.append(cv2.cvtColor(p.grey, cv2.COLOR_GRAY2RGB))
        if on_progress:
            on_progress(i, len(photos))
    n = len(examined)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    exact_twin = [False] * n
    first_of: dict[str, int] = {}
    for i, p in enumerate(examined):
        if p.digest in first_of:
            exact_twin[i] = exact_twin[first_of[p.digest]] = True
            parent[root(i)] = root(first_of[p.digest])
        else:
            first_of[p.digest] = i
    candidates: set[tuple[int, int]] = set()
    if n > 1:
        hashes = np.array([p.hashes[0] for p in examined], np.uint64)
        turned = np.array([p.hashes for p in examined], np.uint64)
        for i in range(n):  # any quarter turn of each against the others upright: Hamming distance by popcount
            xor = turned[i][:, None] ^ hashes[None, :]
            distance = np.unpackbits(xor.view(np.uint8).reshape(4, n, 8), axis=2).sum(axis=2).min(axis=0)
            candidates |= {(min(i, j), max(i, j)) for j in np.nonzero(distance <= HASH_DISTANCE)[0] if j != i}
        vectors = Embedder(model).embed(crops)
        sims = vectors @ vectors.T
        for i in range(n):
            order = np.argsort(-sims[i])[:neighbours + 1]
            candidates |= {(min(i, int(j)), max(i, int(j))) for j in order if j != i}
    for i, j in sorted(candidates):
        if root(i) != root(j) and same_photograph(examined[i], examined[j]):
            parent[root(j)] = root(i)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    groups = []
    for group in members.values():
        if len(group) > 1:
            group.sort(key=lambda i: (-examined[i].pixels, examined[i].name))
            groups.append([(i, "exact" if exact_twin[i] else "near") for i in group])
    groups.sort(key=lambda g: examined[g[0][0]].name)
    return Duplicates(examined, groups, skipped)


def contact_sheet(dups: Duplicates, group: list[tuple[int, str]], side: int = 200) -> np.ndarray:
    """One group's photos side by side (grey, as compared), each labelled with its kind and file name."""
    tiles = []
    for k, (i, kind) in enumerate(group):
        p = dups.photos[i]
        tile = np.full((side + 44, side, 3), 255, np.uint8)
        tile[:side] = cv2.cvtColor(cv2.resize(p.grey, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2RGB)
        label = ("kept, " if k == 0 else "") + kind
        cv2.putText(tile, label, (4, side + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(tile, Path(p.name).name[:28], (4, side + 36), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1,
                    cv2.LINE_AA)
        tiles.append(tile)
    gap = np.full((side + 44, 8, 3), 255, np.uint8)
    return np.hstack([t for tile in tiles for t in (tile, gap)][:-1])


def write_outputs(dups: Duplicates, source: Path, out: Path, clean: Path | None = None,
                  sheet: Path | None = None) -> None:
    """groups.csv; with ``clean``, the source manifest's rows (or the folder's photos) less the dropped photos;
    with ``sheet``, ``group-N.png`` for each group. Each file written whole or not at all."""
    import csv
    import os

    from coinmatch.files import replaced
    from coinmatch.images import save_rgb

    with replaced(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["group", "image", "kind"])
        writer.writeheader()
        writer.writerows(dups.rows())
    if clean is not None:
        dropped = dups.dropped()
        with replaced(clean) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            if Path(source).is_dir():
                writer = csv.writer(f)
                writer.writerow(["image"])
                base = Path(clean).resolve().parent
                writer.writerows([os.path.relpath(p.path.resolve(), base)] for p in dups.photos
                                 if p.name not in dropped)
            else:
                with open(source, newline="", encoding="utf-8-sig") as src:
                    reader = csv.DictReader(src)
                    writer = csv.DictWriter(f, fieldnames=reader.fieldnames)
                    writer.writeheader()
                    faces = [c for c in ("image", "obverse", "reverse") if c in (reader.fieldnames or [])]
                    here, there = Path(source).resolve().parent, Path(clean).resolve().parent
                    for row in reader:
                        if any((row.get(c) or "").strip() in dropped for c in faces):
                            continue
                        for c in faces:  # the paths were relative to the source manifest: now to the clean one
                            if (row.get(c) or "").strip():
                                row[c] = os.path.relpath((here / row[c].strip()).resolve(), there)
                        writer.writerow(row)
    if sheet is not None:
        Path(sheet).mkdir(parents=True, exist_ok=True)
        for g, group in enumerate(dups.groups, 1):
            save_rgb(contact_sheet(dups, group), Path(sheet) / f"group-{g}.png")

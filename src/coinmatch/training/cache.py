"""Training images decoded once, coin found and cropped, resized once, held in memory as uint8.

The research's lessons: reading from disk and augmenting at full size were the bottlenecks.
Exact duplicates (same pixels) and perceptual duplicates (the same 64-bit pHash of the whole photo) are
dropped, so one coin scanned twice does not become two classes that the loss pushes apart (the quick keys of
:mod:`coinmatch.dedup`, which catalogue builds warn by too; ``coinmatch dedup`` finds the rest).

Finding and cropping the coin is most of a full run's caching time (about 14 minutes for the 7,234
OCRE and euro photos on 2 cores), so a prepared cache is also kept on disk, under the coinmatch
cache folder (``COINMATCH_CACHE``), and reused by the next run with the same inputs. Its key covers the
manifest's bytes, every image's path, size and modification time, the settings, and the source of
the code that prepares the images: change any of them and the cache is built afresh. The folder is
kept within a budget (``COINMATCH_TRAINING_CACHE_GB``, 4 by default): after each write the caches used
least recently are deleted until the rest fit, and so are leftovers of writes that died a day ago or more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from coinmatch import CoinmatchError
from coinmatch.catalog.manifest import read_manifest, require_column
from coinmatch.dedup import photo_hash, pixel_digest
from coinmatch.files import replaced
from coinmatch.images import load_rgb
from coinmatch.prepare import prepare_array

log = logging.getLogger(__name__)


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


def cache_size(image_size: int) -> int:
    """The side the training images are cached at: room for augmentation's scale and shift before ``image_size``."""
    return int(round(image_size * 1.15))


def load_cache(manifest: str | Path, size: int, type_column: str | None = None, dedupe: bool = True,
               progress: bool = True, limit: int | None = None, disk: bool = True, workers: int = 0) -> TrainingCache:
    """Read every image of a manifest (each row its own class) into memory at ``size`` px.

    With ``disk``, a cache prepared before from the same inputs is read back instead (see the module's notes).
    ``workers``: processes that find and crop the coins (0: this one); the cache is the same either way.
    """
    entries = read_manifest(manifest, id_column=None)
    if type_column:
        require_column(manifest, type_column, "--type-column")
    faces = [(e, f) for e in entries for f in e.faces]
    if limit:
        faces = faces[:limit]
    path = _disk_path(manifest, faces, size, type_column, dedupe) if disk else None
    budget = budget_bytes() if path is not None else 0  # a bad setting fails now, not after the build
    if path is not None and path.is_file():
        try:
            cache = _read(path)
        except Exception as exc:  # a damaged cache file costs a rebuild, never the run
            log.warning("%s: unreadable training cache (%s); building it again", path, exc)
        else:
            try:
                os.utime(path)  # used now: the last to be pruned
            except OSError:
                pass  # a read-only cache folder is still a cache
            for s in cache.skipped:  # said on every run, as when the cache was built
                log.warning("skipped: %s", s)
            return cache
    cache = _build(manifest, faces, size, type_column, dedupe, progress, workers)
    if path is not None:
        _write(cache, path)
        prune(path.parent, budget, keep=path)
    return cache


def budget_bytes() -> int:
    value = os.environ.get("COINMATCH_TRAINING_CACHE_GB", "4")
    try:
        gb = float(value)
    except ValueError:
        raise CoinmatchError(f"COINMATCH_TRAINING_CACHE_GB must be a number of gigabytes, not {value!r}") from None
    return int(max(gb, 0.0) * 1e9)


def prune(folder: Path, budget: int, keep: Path | None = None, stale_seconds: float = 86400.0) -> list[Path]:
    """Delete the least recently used caches in ``folder`` until the rest fit in ``budget`` bytes (``keep``
    stays whatever its size), and temporary files of writes that stopped ``stale_seconds`` ago or more.
    Returns what was deleted."""
    now, deleted = time.time(), []
    for tmp in folder.glob("*.npz.*.tmp"):
        try:
            if now - tmp.stat().st_mtime >= stale_seconds:
                tmp.unlink()
                deleted.append(tmp)
        except OSError:
            pass  # another run's file, gone or busy: not ours to fight over
    files = []
    for f in folder.glob("*.npz"):
        try:
            st = f.stat()
        except OSError:
            continue
        files.append((st.st_mtime, st.st_size, f))
    total = sum(size for _, size, _ in files)
    for _, size, f in sorted(files, key=lambda t: t[0]):
        if total <= budget:
            break
        if keep is not None and f == keep:
            continue
        try:
            f.unlink()
        except OSError as exc:
            log.warning("%s: could not prune the training cache (%s)", f, exc)
            continue
        total -= size
        deleted.append(f)
        log.info("%s: pruned from the training cache (least recently used)", f.name)
    return deleted


def _prepare(path: str, size: int, dedupe: bool) -> tuple[np.ndarray, str, str] | str:
    """One photo's cached crop and its two duplicate keys, or the message of why it cannot be read."""
    try:
        rgb = load_rgb(path)
    except CoinmatchError as exc:
        return str(exc)
    crop = prepare_array(rgb, path).crop
    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC)
    if not dedupe:
        return small, "", ""
    return small, pixel_digest(rgb), photo_hash(rgb)  # the keys catalogue builds and coinmatch dedup use


def _prepared(paths: list[str], size: int, dedupe: bool, workers: int):
    """``_prepare`` of every path, in order: in this process, or spread over ``workers`` processes."""
    def here(rest: list[str]):
        return (_prepare(p, size, dedupe) for p in rest)

    if workers <= 0 or len(paths) < 2:
        return here(paths)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    def results():
        done = 0
        try:
            # spawned, not forked: the parent may hold torch's and OpenCV's thread pools, which a fork can leave
            # locked; one OpenCV thread each
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=cv2.setNumThreads, initargs=(1,)) as pool:
                for result in pool.map(_prepare, paths, [size] * len(paths), [dedupe] * len(paths),
                                       chunksize=max(1, min(32, len(paths) // (4 * workers)))):
                    yield result
                    done += 1
        except BrokenProcessPool as exc:  # e.g. a program read from standard input, which spawned workers cannot load
            log.warning("the worker processes stopped (%s); finding the remaining %d coins in this process",
                        exc, len(paths) - done)
            yield from here(paths[done:])
    return results()


def _build(manifest, faces, size: int, type_column: str | None, dedupe: bool, progress: bool,
           workers: int = 0) -> TrainingCache:
    images, types, names, skipped, dropped = [], [], [], [], []
    type_names: list[str] = []
    seen_pixels: dict[str, str] = {}
    seen_hash: dict[str, str] = {}
    prepared = _prepared([str(face.path) for _, face in faces], size, dedupe, workers)
    for (entry, face), result in tqdm(zip(faces, prepared), total=len(faces), desc=f"caching {Path(manifest).name}",
                                      unit="img", disable=not progress):
        if isinstance(result, str):  # said now, not only in the summary at the end of a long run
            log.warning("skipped: %s", result)
            skipped.append(result)
            continue
        small, digest, ph = result
        if dedupe:
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


def _code_digest() -> str:
    """The source of the modules that turn a photo into a cached crop: a change there invalidates the caches."""
    from coinmatch import images, prepare, segment

    h = hashlib.sha1()
    for module in (images, prepare, segment):
        h.update(Path(module.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def _disk_path(manifest, faces, size: int, type_column: str | None, dedupe: bool) -> Path | None:
    from coinmatch.models.runtime import cache_dir

    h = hashlib.sha1()
    try:
        h.update(Path(manifest).read_bytes())
        for _, face in faces:
            st = os.stat(face.path)
            h.update(f"{Path(face.path).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except OSError:
        return None  # a missing image: build in memory, which names it among the skipped
    h.update(json.dumps([str(Path(manifest).resolve()), size, type_column, dedupe, _code_digest()]).encode())
    return cache_dir() / "training" / f"{Path(manifest).stem}-{size}-{h.hexdigest()[:20]}.npz"


def _write(cache: TrainingCache, path: Path) -> None:
    meta = {"names": cache.names, "type_names": cache.type_names, "dropped": cache.dropped_duplicates,
            "skipped": cache.skipped}
    try:
        with replaced(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=cache.images, types=cache.types, meta=np.array(json.dumps(meta)))
    except OSError as exc:
        log.warning("%s: could not keep the training cache on disk (%s)", path, exc)


def _read(path: Path) -> TrainingCache:
    with np.load(path, allow_pickle=False) as z:
        images, types, meta = z["images"], z["types"], json.loads(str(z["meta"]))
    if images.ndim != 4 or images.dtype != np.uint8 or not len(types) == len(images) == len(meta["names"]):
        raise ValueError("arrays of the wrong shape")
    return TrainingCache(images, np.arange(len(images)), types.astype(np.int64), meta["names"], meta["type_names"],
                         [tuple(d) for d in meta["dropped"]], meta["skipped"])

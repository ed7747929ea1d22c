"""Manifest -> catalogue: prepare every face, embed in batches, store records, vectors, thumbnails."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import sqlite3
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coinmatch import CoinmatchError
from coinmatch.catalog.manifest import Entry, read_manifest
from coinmatch.catalog.folders import DB_NAME, CatalogueError, is_catalogue, replace_folder
from coinmatch.catalog.faces import PreparedFace, prepare_face, worker_start
from coinmatch.catalog.index import check_kind
from coinmatch.catalog.store import Catalogue, NewImage
from coinmatch.models.modelfile import BUILTIN_PREFIX, LoadedModel, load_model
from coinmatch.models.runtime import Embedder

log = logging.getLogger(__name__)
WORKERS_FROM = 200  # faces: smaller builds are prepared in the building process
CHUNK = 256  # faces prepared and embedded at a time, so memory stays flat for large manifests
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "WEBP": "webp", "BMP": "bmp", "GIF": "gif"}


def default_workers(faces: int) -> int:
    """Worker processes a build of this many faces uses by default: one a core; none on one core, or for fewer
    than :data:`WORKERS_FROM` faces (starting the workers costs seconds: more than they save on a small build)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return n if n > 1 and faces >= WORKERS_FROM else 0


def _prepared(chunks: Iterator[list[Entry]], features: bool, workers: int) -> Iterator[tuple[list[Entry], list]]:
    """Each chunk of entries with its faces prepared (:func:`prepare_face`, in order). With ``workers`` > 1 the
    faces are prepared in that many processes, the next chunk while the caller embeds this one; at most two
    chunks are in flight, so memory stays flat however long the manifest."""
    if workers <= 1:
        for chunk in chunks:
            yield chunk, [prepare_face(f.path, features) for e in chunk for f in e.faces]
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=worker_start,
                             initargs=(os.getpid(),)) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append((chunk, [pool.submit(prepare_face, f.path, features) for e in chunk for f in e.faces]))
            if len(pending) > 1:
                done, futures = pending.popleft()
                yield done, [f.result() for f in futures]
        while pending:
            done, futures = pending.popleft()
            yield done, [f.result() for f in futures]


def _images(chunks: Iterator[list[Entry]], embedder: Embedder, skip_bad: bool, features: bool, workers: int,
            bar: tqdm) -> Iterator[tuple[dict[str, dict], list[NewImage], list[str]]]:
    """For each chunk of entries: its entries' records, their faces found, embedded (with angle vectors),
    thumbnailed and (with ``features``) their local features extracted, and the messages of the images skipped
    (``skip_bad``; else the first unusable image stops the build)."""
    seen: dict[str, str] = {}  # duplicate keys (as training's and coinmatch dedup's) -> the first image with them
    for chunk, faces in _prepared(chunks, features, workers):
        kept: list[tuple[Entry, object, PreparedFace]] = []
        skipped = []
        for (entry, face), got in zip(((e, f) for e in chunk for f in e.faces), faces):
            if isinstance(got, CoinmatchError):
                if not skip_bad:
                    raise got
                skipped.append(str(got))
                log.warning("skipped: %s", got)
                continue
            kept.append((entry, face, got))
            _warn_duplicate(seen, got.keys, face.relpath)
        vectors, angles = embedder.embed_with_angles([p.crop for _, _, p in kept])
        records = {}
        images = []
        for i, ((entry, face, p), vec) in enumerate(zip(kept, vectors)):
            records.setdefault(entry.id, entry.metadata)
            images.append(NewImage(entry.id, face.side, str(face.path), face.relpath, vec, p.thumbnail, p.found,
                                   p.circle, p.warnings, p.features,
                                   None if angles is None else angles[i].astype(np.float16)))
        bar.update(sum(len(e.faces) for e in chunk))
        yield records, images, skipped


def _chunks(entries: list[Entry], start: int = 0, stop: int | None = None) -> Iterator[list[Entry]]:
    """The entries in chunks of :data:`CHUNK` faces or so (an entry's faces stay together), chunks ``start`` to
    ``stop``: the same chunks, whatever chunk a build starts from."""
    chunk, faces, index = [], 0, 0
    for e in entries:
        if stop is not None and index >= stop:
            return
        chunk.append(e)
        faces += len(e.faces)
        if faces >= CHUNK:
            if index >= start:
                yield chunk
            chunk, faces, index = [], 0, index + 1
    if chunk and index >= start and (stop is None or index < stop):
        yield chunk


def _warn_duplicate(seen: dict[str, str], keys: dict[str, str], name: str) -> None:
    """Say when an image repeats one given before: the same pixels, or the same photo's perceptual hash."""
    for kind, key in keys.items():
        if key in seen:
            log.warning("%s is %s of %s (coinmatch dedup finds them all)", name, kind, seen[key])
            return
    for key in keys.values():
        seen[key] = name


def building_folder(root: Path) -> Path:
    """Where a build of ``root`` is made, and where ``resume`` finds it."""
    return root.with_name(f".{root.name}.building")


def build_catalogue(root: str | Path, manifest: str | Path, model: str | None = None, backend: str = "onnx",
                    skip_bad: bool = False, progress: bool = True, index: str = "auto",
                    features: bool = True, split: bool = False, workers: int | None = None,
                    resume: bool = False) -> dict:
    """Build a catalogue from a manifest beside it (``.<name>.building``), then move it into place (see
    :func:`coinmatch.catalog.folders.replace_folder`). The entries are prepared in ``workers`` processes (default
    :func:`default_workers`; 0 or 1: in this one), embedded in batches and stored chunk by chunk, each chunk in one
    transaction; the index (``index``: :mod:`coinmatch.catalog.index`) is made once at the end. A build stopped at
    any moment (even killed) leaves the catalogue that was there; ``resume`` goes on from the last chunk stored
    (the same manifest, model and options), to the same catalogue as a build never stopped. ``features``: store
    local features for verification. ``split``: the manifest's images (or one photo, PDF or folder) are plates or
    piles: every coin becomes an entry (:mod:`coinmatch.split`; the crops are kept beside the catalogue, in
    ``<name>.coins/``), its record carrying the source, page, position and caption."""
    root = Path(root)
    if root.exists() and not is_catalogue(root) and root.is_dir() and any(root.iterdir()):
        raise CatalogueError(f"{root}: folder exists and is not a catalogue; refusing to overwrite it")
    index = check_kind(index)
    root.parent.mkdir(parents=True, exist_ok=True)
    work = building_folder(root)
    with _build_lock(root):
        if split:
            from coinmatch.split import split as split_coins

            coins = root.parent / f"{root.name}.coins"
            if not (resume and is_catalogue(work)):
                shutil.rmtree(coins, ignore_errors=True)
            manifest, found = split_coins(manifest, coins)
            if not found:
                raise CatalogueError(f"{manifest}: no coin found to catalogue")
        entries = read_manifest(manifest)
        loaded = load_model(model)
        settings = json.dumps({"manifest": hashlib.sha256(Path(manifest).read_bytes()).hexdigest(),
                               "model": loaded.fingerprint, "features": features, "skip_bad": skip_bad,
                               "index": index})
        total = sum(len(e.faces) for e in entries)
        workers = default_workers(total) if workers is None else int(workers)
        cat = _start(work, root, loaded, index, settings, resume)
        try:
            done = int(cat.meta("build_chunks", "0"))
            skipped = json.loads(cat.meta("build_skipped", "[]"))
            bar = tqdm(total=total, initial=sum(len(e.faces) for c in _chunks(entries, stop=done) for e in c),
                       desc="cataloguing", unit="img", disable=not progress)
            embedder = Embedder(loaded, backend=backend)
            for records, images, bad in _images(_chunks(entries, done), embedder, skip_bad, features, workers, bar):
                done += 1
                skipped += bad
                cat.append(records, images, meta={"build_chunks": done, "build_skipped": json.dumps(skipped)})
            bar.close()
            cat.reindex()
        finally:
            cat.close()
        replace_folder(work, root)
    with Catalogue.open(root) as cat:
        info = cat.info()
    info["skipped"] = skipped
    return info


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """One build of a catalogue at a time: a second is refused while the first runs (the lock dies with it)."""
    lock = root.with_name(f".{root.name}.lock")
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(f.fileno()).st_ino != os.stat(lock).st_ino:  # locked a file that a finished build removed
                raise OSError
        except OSError:
            raise CatalogueError(f"{root}: another build of this catalogue is running") from None
        try:
            yield
        finally:  # removed while still held, so no other build can lock the file being removed and go on
            lock.unlink(missing_ok=True)
            fcntl.flock(f, fcntl.LOCK_UN)


def _settings_of(work: Path) -> str | None:
    """The settings an interrupted build in ``work`` was started with (None: none there, or unreadable)."""
    if not is_catalogue(work):
        return None
    try:
        with closing(sqlite3.connect(work / DB_NAME)) as db:
            row = db.execute("SELECT value FROM meta WHERE key='build_settings'").fetchone()
    except sqlite3.DatabaseError:
        return None
    return row[0] if row else None


def _start(work: Path, root: Path, loaded: LoadedModel, index: str, settings: str, resume: bool) -> Catalogue:
    """The catalogue being built: the interrupted one (``resume``, with the same settings), else a new one."""
    found = _settings_of(work)
    if resume and found is not None:
        if found != settings:
            raise CatalogueError(f"{root}: the interrupted build was of another manifest, model or options; "
                                 f"build without --resume to start afresh")
        return Catalogue.open(work)
    if resume:
        log.warning("%s: no interrupted build to resume; building from the start", root)
    elif work.exists():
        log.warning("%s: an interrupted build is discarded (--resume goes on from one)", root)
    shutil.rmtree(work, ignore_errors=True)
    model_file = None if loaded.source.startswith(BUILTIN_PREFIX) else loaded.source
    return Catalogue.create(work, loaded.fingerprint, loaded.source, asdict(loaded.config), loaded.dim,
                            model_file=model_file, index=index, model_name=loaded.describe(),
                            extra_meta={"build_settings": settings})


def add_uploaded_entry(root: str | Path, entry_id: str, metadata: dict[str, str],
                       faces: list[tuple[str | None, bytes, str]], backend: str = "onnx") -> dict:
    """One entry from images given as bytes (a web form): ``faces`` are (side or None, the file's bytes, its name
    for messages). Each is read through the safe loader first; the catalogue keeps it in its own ``images/``
    folder under a name it makes (never the uploaded one), then it is found, embedded and added in one step.
    Nothing is kept if anything fails."""
    from PIL import Image

    from coinmatch.catalog.manifest import RESERVED, Face
    from coinmatch.images import open_image

    entry_id = str(entry_id).strip()
    if not entry_id or not entry_id.isprintable() or len(entry_id) > 200:
        raise CatalogueError(f"entry id {entry_id[:40]!r}: give an id of 1 to 200 printable characters")
    bad = sorted(k for k in metadata if k in RESERVED or not str(k).strip())
    if bad:
        raise CatalogueError(f"entry {entry_id!r}: {bad[0]!r} cannot be a metadata column (reserved or empty)")
    if not faces:
        raise CatalogueError(f"entry {entry_id!r}: no image given")
    written: list[Path] = []
    try:
        with Catalogue.open(root) as cat:
            if cat.has_entry(entry_id):
                raise CatalogueError(f"{root}: entry {entry_id!r} is already in the catalogue; nothing was added")
            folder = Path(root) / "images"
            folder.mkdir(exist_ok=True)
            entry_faces = []
            for side, data, name in faces:
                open_image(data, name=name)  # a clear error for a file that is not a usable image
                fmt = Image.open(io.BytesIO(data)).format
                target = folder / f"{uuid.uuid4().hex}.{EXTENSIONS.get(fmt, 'img')}"
                target.write_bytes(data)
                written.append(target)
                entry_faces.append(Face(side, target.resolve(), f"images/{target.name}"))
            info = _append(cat, [Entry(entry_id, entry_faces, {k: str(v) for k, v in metadata.items()})],
                           _model_of(cat), backend)
    except BaseException:
        for f in written:
            f.unlink(missing_ok=True)
        raise
    return info


def add_to_catalogue(root: str | Path, manifest: str | Path, backend: str = "onnx", skip_bad: bool = False,
                     progress: bool = True, model: str | None = None, workers: int | None = None) -> dict:
    """Append a manifest's entries to a catalogue, embedding only the new images; with local features where the
    catalogue keeps them (every catalogue built with features, and an empty one)."""
    with Catalogue.open(root) as cat:
        loaded = _model_of(cat, model)
        entries = read_manifest(manifest)
        dupes = [e.id for e in entries if cat.has_entry(e.id)]
        if dupes:
            raise CatalogueError(f"{manifest}: {len(dupes)} id(s) already in {root}, e.g. {dupes[0]!r}; "
                                 f"nothing was added")
        return _append(cat, entries, loaded, backend, skip_bad, progress,
                       default_workers(sum(len(e.faces) for e in entries)) if workers is None else workers)


def _model_of(cat: Catalogue, model: str | None = None) -> LoadedModel:
    """The catalogue's model (or ``model``, refused unless it is the catalogue's)."""
    loaded = load_model(model or cat.model_source)
    cat.check_model(loaded.fingerprint, loaded.source)
    return loaded


def _append(cat: Catalogue, entries: list[Entry], loaded: LoadedModel, backend: str, skip_bad: bool = False,
            progress: bool = False, workers: int = 0) -> dict:
    """Embed the entries with the catalogue's model and add them in one step; with local features where the
    catalogue keeps them (every catalogue built with features, and an empty one). Returns its info with ``added``
    (images) and ``skipped``."""
    features = len(cat) == 0 or cat.info()["verification_features"] > 0
    embedder = Embedder(loaded, backend=backend)
    new_entries, images, skipped = {}, [], []
    with tqdm(total=sum(len(e.faces) for e in entries), desc="adding", unit="img", disable=not progress) as bar:
        for records, chunk, bad in _images(_chunks(entries), embedder, skip_bad, features, workers, bar):
            new_entries.update(records)
            images += chunk
            skipped += bad
    added = cat.add(new_entries, images)
    return {**cat.info(), "added": added, "skipped": skipped}

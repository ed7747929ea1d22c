"""Manifest -> catalogue: prepare every face, embed in batches, store records, vectors, thumbnails."""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from coinmatch import CoinmatchError
from coinmatch.catalog.manifest import Entry, read_manifest
from coinmatch.catalog.folders import CatalogueError, is_catalogue, replace_folder
from coinmatch.catalog.store import Catalogue, NewImage
from coinmatch.models.modelfile import BUILTIN_PREFIX, LoadedModel, load_model
from coinmatch.models.runtime import Embedder
from coinmatch.images import load_rgb
from coinmatch.prepare import PreparedCoin, prepare_array
from coinmatch.quality import quality_warnings
from coinmatch.verify import extract_features_blob

log = logging.getLogger(__name__)
THUMB_SIDE = 160
CHUNK = 256  # faces prepared and embedded at a time, so memory stays flat for large manifests
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "WEBP": "webp", "BMP": "bmp", "GIF": "gif"}


def thumbnail(crop: np.ndarray) -> np.ndarray:
    return cv2.resize(crop, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)


def _new_images(entries: list[Entry], embedder: Embedder, skip_bad: bool, progress: bool,
                features: bool) -> tuple[dict[str, dict], list[NewImage], list[str]]:
    """Each face of the entries found, embedded (with its angle vectors), thumbnailed and, with ``features``,
    its local features extracted for verification."""
    faces = [(e, f) for e in entries for f in e.faces]
    kept_entries: dict[str, dict] = {}
    out: list[NewImage] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}  # duplicate keys (as training's and coinmatch dedup's) -> the first image with them
    bar = tqdm(total=len(faces), desc="cataloguing", unit="img", disable=not progress)
    for start in range(0, len(faces), CHUNK):
        chunk = faces[start:start + CHUNK]
        prepared: list[tuple[Entry, object, PreparedCoin]] = []
        for entry, face in chunk:
            try:
                rgb = load_rgb(face.path, name=str(face.path))
                prepared.append((entry, face, prepare_array(rgb, str(face.path))))
                _warn_duplicate(seen, rgb, face.relpath)
            except CoinmatchError as exc:
                if not skip_bad:
                    raise
                skipped.append(str(exc))
                log.warning("skipped: %s", exc)
        vectors, angles = embedder.embed_with_angles([p.crop for _, _, p in prepared])
        for i, ((entry, face, p), vec) in enumerate(zip(prepared, vectors)):
            kept_entries.setdefault(entry.id, entry.metadata)
            c = p.location.circle
            out.append(NewImage(entry.id, face.side, str(face.path), face.relpath, vec, thumbnail(p.crop),
                                p.location.found, (c.x, c.y, c.r),
                                p.notes + quality_warnings(p.crop, 2 * c.r),
                                extract_features_blob(p.crop) if features else None,
                                None if angles is None else angles[i].astype(np.float16)))
        bar.update(len(chunk))
    bar.close()
    return kept_entries, out, skipped


def _warn_duplicate(seen: dict[str, str], rgb: np.ndarray, name: str) -> None:
    """Say when an image repeats one given before: the same pixels, or the same photo's perceptual hash."""
    from coinmatch.dedup import photo_hash, pixel_digest

    keys = {"an exact duplicate": "x" + pixel_digest(rgb), "a near duplicate": "p" + photo_hash(rgb)}
    for kind, key in keys.items():
        if key in seen:
            log.warning("%s is %s of %s (coinmatch dedup finds them all)", name, kind, seen[key])
            return
    for key in keys.values():
        seen[key] = name


def build_catalogue(root: str | Path, manifest: str | Path, model: str | None = None, backend: str = "onnx",
                    skip_bad: bool = False, progress: bool = True, index_factory: str = "Flat",
                    features: bool = True, split: bool = False) -> dict:
    """Build a catalogue from a manifest in a temporary folder, then move it into place (see
    :func:`coinmatch.catalog.folders.replace_folder`). ``features``: store local features for verification.
    ``split``: the manifest's images (or one photo, PDF or folder) are plates or piles: every coin becomes an entry
    (:mod:`coinmatch.split`; the crops are kept beside the catalogue, in ``<name>.coins/``), its record carrying the
    source, page, position and caption."""
    root = Path(root)
    if root.exists() and not is_catalogue(root) and root.is_dir() and any(root.iterdir()):
        raise CatalogueError(f"{root}: folder exists and is not a catalogue; refusing to overwrite it")
    if split:
        from coinmatch.split import split as split_coins

        coins = root.parent / f"{root.name}.coins"
        shutil.rmtree(coins, ignore_errors=True)
        manifest, found = split_coins(manifest, coins)
        if not found:
            raise CatalogueError(f"{manifest}: no coin found to catalogue")
    entries = read_manifest(manifest)
    loaded = load_model(model)
    embedder = Embedder(loaded, backend=backend)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        model_file = None if loaded.source.startswith(BUILTIN_PREFIX) else loaded.source
        cat = Catalogue.create(tmp, loaded.fingerprint, loaded.source, asdict(loaded.config), loaded.dim,
                               model_file=model_file, index_factory=index_factory, model_name=loaded.describe())
        try:
            new_entries, images, skipped = _new_images(entries, embedder, skip_bad, progress, features)
            cat.add(new_entries, images)
        finally:
            cat.close()
        replace_folder(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with Catalogue.open(root) as cat:
        info = cat.info()
    info["skipped"] = skipped
    return info


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
                     progress: bool = True, model: str | None = None) -> dict:
    """Append a manifest's entries to a catalogue, embedding only the new images; with local features where the
    catalogue keeps them (every catalogue built with features, and an empty one)."""
    with Catalogue.open(root) as cat:
        loaded = _model_of(cat, model)
        entries = read_manifest(manifest)
        dupes = [e.id for e in entries if cat.has_entry(e.id)]
        if dupes:
            raise CatalogueError(f"{manifest}: {len(dupes)} id(s) already in {root}, e.g. {dupes[0]!r}; "
                                 f"nothing was added")
        return _append(cat, entries, loaded, backend, skip_bad, progress)


def _model_of(cat: Catalogue, model: str | None = None) -> LoadedModel:
    """The catalogue's model (or ``model``, refused unless it is the catalogue's)."""
    loaded = load_model(model or cat.model_source)
    cat.check_model(loaded.fingerprint, loaded.source)
    return loaded


def _append(cat: Catalogue, entries: list[Entry], loaded: LoadedModel, backend: str, skip_bad: bool = False,
            progress: bool = False) -> dict:
    """Embed the entries with the catalogue's model and add them in one step; with local features where the
    catalogue keeps them (every catalogue built with features, and an empty one). Returns its info with ``added``
    (images) and ``skipped``."""
    features = len(cat) == 0 or cat.info()["verification_features"] > 0
    new_entries, images, skipped = _new_images(entries, Embedder(loaded, backend=backend), skip_bad, progress,
                                               features)
    added = cat.add(new_entries, images)
    return {**cat.info(), "added": added, "skipped": skipped}

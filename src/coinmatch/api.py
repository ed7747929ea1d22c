"""The public Python API: what a notebook, the CLI and the web app call.

>>> from coinmatch import Catalogue
>>> with Catalogue.build("cat_dir", "manifest.csv") as cat:           # or Catalogue.open("cat_dir")
...     result = cat.search("photo.jpg", top_k=5, verify=True)        # a path, a PIL image or an RGB array
...     best = result.matches[0]                                      # .id, .score, .metadata, .inliers
...     result.decision                                               # "match" / "no_match" once calibrated
...     result.to_dict()                                              # one line of `coinmatch search --json`

One set of defaults, here: the CLI adds no behaviour of its own. Local features for verification are stored
with every catalogue; search aligns a model of several angles and takes each candidate's local density off
(see :mod:`coinmatch.search`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coinmatch.search import Match, QueryResult

if TYPE_CHECKING:
    from coinmatch.search import Searcher

__all__ = ["Catalogue", "Match", "SearchResult", "augment_grid", "compare", "embed", "mine_pairs", "train"]

SearchResult = QueryResult  # what a search answers: ``matches``, ``decision``, ``warnings``, ``to_dict()``

DEFAULTS = {"top_k": 5, "candidates": 20, "target_fpr": 0.01, "index": "auto", "backend": "onnx"}


class Catalogue:
    """A catalogue of coins: build it from a manifest, open it, add to it, search it, calibrate it.

    A catalogue is a folder holding its records (SQLite), vectors (faiss), local features, thumbnails and a copy
    of its model, so opening the folder is enough to search it on any machine. Use it as a context manager, or
    call :meth:`close`. The model is loaded on the first search, once."""

    def __init__(self, path: str | Path, backend: str = DEFAULTS["backend"]):
        """Open an existing catalogue (the same as :meth:`open`). ``backend``: ``onnx`` (ONNX Runtime, the
        default) or ``torch`` (which also runs on a CUDA GPU)."""
        from coinmatch.catalog.store import Catalogue as Store

        self.path = Path(path)
        self.backend = backend
        Store.open(self.path).close()  # a missing or damaged catalogue is said now, not at the first search
        self._searcher: Searcher | None = None
        self._lock = threading.RLock()  # one search or change at a time: a Catalogue may be shared by threads
        self.skipped: list[str] = []  # the unreadable images that the build skipped (``skip_bad``)

    # -- opening and building -----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, backend: str = DEFAULTS["backend"]) -> "Catalogue":
        """Open the catalogue in folder ``path``."""
        return cls(path, backend=backend)

    @classmethod
    def build(cls, path: str | Path, manifest: str | Path, model: str | Path | None = None,
              index: str = DEFAULTS["index"], features: bool = True, skip_bad: bool = False,
              progress: bool = False, backend: str = DEFAULTS["backend"], split: bool = False,
              workers: int | None = None, resume: bool = False) -> "Catalogue":
        """Build a catalogue in folder ``path`` from a manifest (a CSV with an ``image`` column, or ``obverse`` and
        ``reverse``; any other columns are kept as each entry's metadata), replacing any catalogue there in one
        step. ``model``: a model file (``.cm``), ``builtin:<backbone>`` (the untrained ImageNet model), or None
        for the default (the bundled model, or ``$COINMATCH_MODEL``; the README's "The default model"). ``index``: the
        vector index, ``auto`` (chosen by size: exact up to 10,000 images, then HNSW, then IVF-PQ past 2 million),
        ``flat``, ``hnsw`` or ``ivfpq`` (:mod:`coinmatch.catalog.index`). ``features``: store local features so
        that searches can be verified. ``skip_bad``: skip unreadable images (listed in :meth:`info`'s
        ``skipped``) instead of stopping at the first. ``split``: the images are plates, piles or PDFs of many
        coins: each coin becomes an entry (``coinmatch split``). ``workers``: processes that decode, find coins
        and extract local features (default: one a core, for 200 images or more). ``resume``: go on from a build
        of the same manifest, model and options that was stopped (killed, even), to the catalogue an unstopped
        build makes."""
        from coinmatch.catalog.build import build_catalogue

        info = build_catalogue(path, manifest, model=None if model is None else str(model), backend=backend,
                               skip_bad=skip_bad, progress=progress, index=index, features=features,
                               split=split, workers=workers, resume=resume)
        cat = cls(path, backend=backend)
        cat.skipped = info["skipped"]
        return cat

    def add(self, manifest: str | Path, skip_bad: bool = False, progress: bool = False,
            workers: int | None = None) -> dict:
        """Append a manifest's entries (embedding only the new images) in one atomic step; returns :meth:`info`
        with ``added`` (images) and ``skipped``. Ids already in the catalogue are refused, and nothing is added."""
        from coinmatch.catalog.build import add_to_catalogue

        with self._lock:
            self._drop_searcher()  # its records and densities are the catalogue's before the addition
            return add_to_catalogue(self.path, manifest, backend=self.backend, skip_bad=skip_bad, progress=progress,
                                    workers=workers)

    def remove(self, *entry_ids: str) -> dict:
        """Take entries out (records, vectors, local features, thumbnails and index) in one atomic step; an
        unknown id is refused and nothing is removed. Returns :meth:`info` with ``removed`` (images)."""
        from coinmatch.catalog.store import Catalogue as Store

        with self._lock:
            self._drop_searcher()
            with Store.open(self.path) as store:
                removed = store.remove(entry_ids)
                return {**store.info(), "removed": removed}

    def add_entry(self, entry_id: str, metadata: dict[str, str] | None = None, image: Any = None,
                  obverse: Any = None, reverse: Any = None) -> dict:
        """Add one entry from its image (or its ``obverse`` and/or ``reverse``), each a path, the file's bytes, or
        (name, bytes), with its record; searchable at once. The catalogue keeps a copy of each image in its
        ``images/`` folder. Returns :meth:`info` with ``added``."""
        from coinmatch import CoinmatchError
        from coinmatch.catalog.build import add_uploaded_entry

        faces = []
        for side, photo in ((None, image), ("obverse", obverse), ("reverse", reverse)):
            if photo is None:
                continue
            if isinstance(photo, tuple):  # (name, bytes): an upload
                name, data = photo
            elif isinstance(photo, bytes):
                name, data = f"<{side or 'image'} of {entry_id}>", photo
            else:
                name = str(photo)
                if not Path(photo).is_file():
                    raise CoinmatchError(f"{name}: file not found")
                data = Path(photo).read_bytes()
            faces.append((side, data, name))
        with self._lock:
            self._drop_searcher()
            return add_uploaded_entry(self.path, entry_id, metadata or {}, faces, backend=self.backend)

    # -- browsing ---------------------------------------------------------------------------------------
    def entries(self, text: str = "", limit: int = 50, offset: int = 0) -> tuple[int, list[dict]]:
        """Entries in catalogue order whose id or any metadata value contains every word of ``text`` (any case):
        (how many match, up to ``limit`` of them from ``offset``), each as :meth:`entry` gives it."""
        from coinmatch.catalog.store import Catalogue as Store

        with Store.open(self.path) as store:
            total, found = store.find_entries(text, limit, offset)
            return total, [self._entry(store, eid, meta) for eid, meta in found]

    def entry(self, entry_id: str) -> dict:
        """One entry: ``{"id", "metadata", "images": [{"row", "side", "image", "thumb"}]}`` (``thumb``: a path inside
        the catalogue folder, or None)."""
        from coinmatch.catalog.store import Catalogue as Store, CatalogueError

        with Store.open(self.path) as store:
            row = store.db.execute("SELECT metadata FROM entries WHERE id=?", (entry_id,)).fetchone()
            if row is None:
                raise CatalogueError(f"{self.path}: no entry {entry_id!r}")
            return self._entry(store, entry_id, json.loads(row[0]))

    @staticmethod
    def _entry(store, entry_id: str, metadata: dict) -> dict:
        rows = [r for r, _ in store.entry_rows(entry_id)]
        return {"id": entry_id, "metadata": metadata,
                "images": [{"row": im.row, "side": im.side, "image": im.relpath, "thumb": im.thumb}
                           for im in store.images(rows)]}

    def crop(self, row: int):
        """A catalogue image's coin crop (RGB array) as it was cropped when added: from its original file where that
        is still there, else its stored thumbnail (160 px)."""
        from coinmatch.catalog.store import Catalogue as Store
        from coinmatch.images import ImageError, load_rgb
        from coinmatch.segment import Circle, CoinLocation, crop_coin

        with Store.open(self.path) as store:
            path, found, (x, y, r) = store.image_source(row)
            thumb = store.images([row])[0].thumb
        try:
            return crop_coin(load_rgb(path), CoinLocation(Circle(x, y, r), found, "stored", 1.0), mask=False)
        except ImageError:
            if thumb is None:
                raise
            return load_rgb(self.path / thumb)

    def evidence(self, photo: Any, entry_id: str, row: int | None = None):
        """The evidence that ``photo`` shows entry ``entry_id``'s coin (:class:`coinmatch.compare.Evidence`): the
        verification search gives (the entry's stored local features), the query turned onto the entry's image,
        the matches drawn. ``photo``: as :meth:`search` takes it, or the :class:`~coinmatch.prepare.PreparedCoin`
        that a search was given. ``row``: which of the entry's images (default: the one with the most inliers)."""
        from coinmatch import verify as verification
        from coinmatch.catalog.store import CatalogueError
        from coinmatch.compare import evidence
        crop = _prepared(photo).crop
        with self._lock:
            rows = [r for r, _ in self.searcher.catalogue.entry_rows(entry_id)]
            if not rows or (row is not None and row not in rows):
                raise CatalogueError(f"{self.path}: no entry {entry_id!r}" + (f" with image row {row}" if rows else ""))
            stored = {r: self.searcher.stored_features(entry_id, r) for r in ([row] if row is not None else rows)}
        query = verification.extract(crop)
        if row is None:
            row = max(stored, key=lambda r: verification.match(query, stored[r]).inliers)
        found = evidence(crop, self.crop(row), query, stored[row])
        found.row = row
        return found

    # -- searching ------------------------------------------------------------------------------------
    @property
    def searcher(self) -> "Searcher":
        """The catalogue opened for queries with its model (loaded once, on first use)."""
        with self._lock:
            if self._searcher is None:
                from coinmatch.search import Searcher

                self._searcher = Searcher(self.path, backend=self.backend)
            return self._searcher

    @property
    def notes(self) -> list[str]:
        """Why a search is weaker than it could be (an old catalogue, a calibration of another score)."""
        return self.searcher.notes

    def search(self, photo: Any, top_k: int = DEFAULTS["top_k"], verify: bool = False,
               candidates: int = DEFAULTS["candidates"], name: str | None = None) -> SearchResult:
        """The catalogue entries most likely to be the coin in ``photo`` (a path, the file's bytes, a PIL image, an
        RGB uint8 array, or a :class:`~coinmatch.prepare.PreparedCoin`), best first. ``verify``: re-rank the top
        ``candidates`` by local-feature geometry (slower, and the evidence a numismatist can check). ``name``: what the result calls the photo."""
        prepared = _prepared(photo, name)  # outside the lock: other threads search meanwhile
        with self._lock:
            return self.searcher.search_prepared([prepared], top_k, verify, candidates)[0]

    def search_coin(self, obverse: Any = None, reverse: Any = None, top_k: int = DEFAULTS["top_k"],
                    verify: bool = False, candidates: int = DEFAULTS["candidates"]) -> SearchResult:
        """One coin given by both faces (either may be None): one ranking of catalogue coins, each query face
        compared with the entry's face of the same side."""
        from coinmatch import CoinmatchError

        if obverse is None and reverse is None:
            raise CoinmatchError("search_coin needs an obverse photo, a reverse photo or both")
        faces = {"obverse": None if obverse is None else _prepared(obverse),
                 "reverse": None if reverse is None else _prepared(reverse)}
        with self._lock:
            return self.searcher.search_faces(faces, top_k=top_k, verify=verify, candidates=candidates)

    # -- evaluating and calibrating ---------------------------------------------------------------------
    def evaluate(self, queries: str | Path, id_column: str = "id", verify: bool = False,
                 candidates: int = DEFAULTS["candidates"], form: str = "photo",
                 target_fpr: float = DEFAULTS["target_fpr"], report: str | Path | None = None,
                 progress: bool = False) -> dict:
        """Score the catalogue on real query photos whose true coin is known: recall@k, mAP, the open-set ROC.
        ``queries``: a manifest whose ``id_column`` names each photo's coin, as an entry id or as the value of
        the catalogue's own column of that name. ``form``: ``photo``, or ``catalogue-like`` (grey, turned, 128
        px). ``report``: a folder for plots, a CSV and an HTML page. With ``verify``, the summary carries the
        unverified figures under ``without_verification``."""
        from coinmatch.evaluation.run import evaluate_queries

        with self._lock:
            return evaluate_queries(self.searcher, queries, id_column, verify, candidates, form, target_fpr, report,
                                    progress)

    def calibrate(self, queries: str | Path, id_column: str = "id", target_fpr: float = DEFAULTS["target_fpr"],
                  verify: bool = False, candidates: int = DEFAULTS["candidates"], progress: bool = False) -> dict:
        """Choose the match / no-match threshold that gives ``target_fpr`` false matches on real query photos
        (some of whose coins may be absent), store it, and return it. From then on every search carries a
        decision. A new calibration replaces the last one whole; with ``verify`` it sets the verified threshold
        too."""
        from coinmatch.evaluation.calibrate import calibrate

        with self._lock:
            return calibrate(self.searcher, queries, id_column, target_fpr, verify, candidates, progress)

    # -- describing and closing ----------------------------------------------------------------------
    def info(self) -> dict:
        """Size, model, index, calibration and stored evidence of the catalogue."""
        from coinmatch.catalog.store import Catalogue as Store

        with Store.open(self.path) as store:
            return store.info()

    def __len__(self) -> int:
        return int(self.info()["entries"])

    def _drop_searcher(self) -> None:
        with self._lock:
            if self._searcher is not None:
                self._searcher.close()
                self._searcher = None

    def close(self) -> None:
        """Release the catalogue's database and model."""
        self._drop_searcher()

    def __enter__(self) -> "Catalogue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalogue({str(self.path)!r})"


def _prepared(photo: Any, name: str | None = None):
    """A photo as :meth:`Catalogue.search` takes it, found and cropped (a PreparedCoin passes as it is)."""
    from coinmatch.prepare import PreparedCoin, prepare_any

    return photo if isinstance(photo, PreparedCoin) else prepare_any(photo, name)


def compare(photo_a: Any, photo_b: Any, model: str | Path | None = None, out: str | Path | None = None,
            backend: str = DEFAULTS["backend"]) -> dict:
    """Are two photos the same coin? The embedding's score and the local features' inliers under one similarity
    transform; ``out``: a PNG of the two coins with their matches drawn."""
    from coinmatch.compare import compare_photos
    from coinmatch.models.runtime import Embedder

    return compare_photos(photo_a, photo_b, out, embedder=Embedder(None if model is None else str(model),
                                                                   backend=backend))


def train(manifests: list[str | Path] | str | Path, out: str | Path, progress: bool = False, **options) -> dict:
    """Train a model file from one photo per coin. With no ``options``, the recipe (see
    :class:`coinmatch.training.loop.TrainConfig` for the options and their defaults: ``loss="triplet"``, ``epochs``,
    ``rotations``...). Returns the run's summary (history, timings, where its plots are)."""
    from coinmatch.training.loop import TrainConfig, train as run

    manifests = [manifests] if isinstance(manifests, (str, Path)) else manifests
    return run(TrainConfig(manifests=[str(m) for m in manifests], out=str(out), **options), progress=progress)


def mine_pairs(manifest: str | Path, out: str | Path, type_column: str | None = None, model: str | None = None,
               shortlist: int = 20, min_inliers: int = 60, progress: bool = False) -> dict:
    """Find the photos of a manifest that show one coin twice (each photo's ``shortlist`` nearest, verified:
    ``min_inliers`` or more), written as a CSV of pairs (``image``, ``coin_id``, ``inliers``)."""
    from coinmatch import CoinmatchError
    from coinmatch.training.mining import mine_manifest

    if min_inliers < 1 or shortlist < 1:
        raise CoinmatchError(f"--min-inliers and --shortlist must be 1 or more, not {min_inliers} and {shortlist}")
    mined = mine_manifest(manifest, out, type_column, model, shortlist, min_inliers, progress=progress)
    return {"pairs": len(mined.pairs), "out": str(out), "seconds": round(mined.seconds, 1)}


def embed(manifest: str | Path, out: str | Path, model: str | None = None, backend: str = DEFAULTS["backend"],
          progress: bool = False) -> tuple[int, int]:
    """Every image of a manifest embedded: ``out`` (.npy) and, beside it, ``.ids.txt`` (one ``id<TAB>image`` a
    row). Returns (vectors, dimensions)."""
    from coinmatch.embed import embed_manifest

    return embed_manifest(manifest, out, model=model, backend=backend, progress=progress)


def augment_grid(photo, out: str | Path, n: int = 24, size: int = 160, seed: int = 0) -> None:
    """A PNG of one coin and ``n - 1`` augmented views of it, as training sees them, to check by eye."""
    from coinmatch.images import save_rgb
    from coinmatch.prepare import prepare_any
    from coinmatch.training.augment import augmentation_grid

    save_rgb(augmentation_grid(prepare_any(photo).crop, n=n, out_size=size, seed=seed), out)

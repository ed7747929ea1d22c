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

from pathlib import Path
from typing import TYPE_CHECKING, Any

from coinmatch.search import Match, QueryResult

if TYPE_CHECKING:
    from coinmatch.search import Searcher

__all__ = ["Catalogue", "Match", "SearchResult", "augment_grid", "compare", "embed", "mine_pairs", "train"]

SearchResult = QueryResult  # what a search answers: ``matches``, ``decision``, ``warnings``, ``to_dict()``

DEFAULTS = {"top_k": 5, "candidates": 20, "target_fpr": 0.01, "index": "Flat", "backend": "onnx"}


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
        self.skipped: list[str] = []  # the unreadable images that the build skipped (``skip_bad``)

    # -- opening and building -----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, backend: str = DEFAULTS["backend"]) -> "Catalogue":
        """Open the catalogue in folder ``path``."""
        return cls(path, backend=backend)

    @classmethod
    def build(cls, path: str | Path, manifest: str | Path, model: str | Path | None = None,
              index: str = DEFAULTS["index"], features: bool = True, skip_bad: bool = False,
              progress: bool = False, backend: str = DEFAULTS["backend"]) -> "Catalogue":
        """Build a catalogue in folder ``path`` from a manifest (a CSV with an ``image`` column, or ``obverse`` and
        ``reverse``; any other columns are kept as each entry's metadata), replacing any catalogue there in one
        step. ``model``: a model file (``.cm``), ``builtin:<backbone>`` (the untrained ImageNet model), or None
        for the default (the bundled model, or ``$COINMATCH_MODEL``; the README's "The default model"). ``index``: a
        faiss index type (``Flat``: exact; ``HNSW32``: millions of entries). ``features``: store local features so
        that searches can be verified. ``skip_bad``: skip unreadable images (listed in :meth:`info`'s
        ``skipped``) instead of stopping at the first."""
        from coinmatch.catalog.build import build_catalogue

        info = build_catalogue(path, manifest, model=None if model is None else str(model), backend=backend,
                               skip_bad=skip_bad, progress=progress, index_factory=index, features=features)
        cat = cls(path, backend=backend)
        cat.skipped = info["skipped"]
        return cat

    def add(self, manifest: str | Path, skip_bad: bool = False, progress: bool = False) -> dict:
        """Append a manifest's entries (embedding only the new images) in one atomic step; returns :meth:`info`
        with ``added`` (images) and ``skipped``. Ids already in the catalogue are refused, and nothing is added."""
        from coinmatch.catalog.build import add_to_catalogue

        self._drop_searcher()  # its records and densities are the catalogue's before the addition
        return add_to_catalogue(self.path, manifest, backend=self.backend, skip_bad=skip_bad, progress=progress)

    # -- searching ------------------------------------------------------------------------------------
    @property
    def searcher(self) -> "Searcher":
        """The catalogue opened for queries with its model (loaded once, on first use)."""
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
        """The catalogue entries most likely to be the coin in ``photo`` (a path, the file's bytes, a PIL image or
        an RGB uint8 array), best first. ``verify``: re-rank the top ``candidates`` by local-feature geometry
        (slower, and the evidence a numismatist can check). ``name``: what the result calls the photo."""
        from coinmatch.prepare import prepare_any

        return self.searcher.search_prepared([prepare_any(photo, name)], top_k, verify, candidates)[0]

    def search_coin(self, obverse: Any = None, reverse: Any = None, top_k: int = DEFAULTS["top_k"],
                    verify: bool = False, candidates: int = DEFAULTS["candidates"]) -> SearchResult:
        """One coin given by both faces (either may be None): one ranking of catalogue coins, each query face
        compared with the entry's face of the same side."""
        from coinmatch import CoinmatchError
        from coinmatch.prepare import prepare_any

        if obverse is None and reverse is None:
            raise CoinmatchError("search_coin needs an obverse photo, a reverse photo or both")
        faces = {"obverse": None if obverse is None else prepare_any(obverse),
                 "reverse": None if reverse is None else prepare_any(reverse)}
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

        return evaluate_queries(self.searcher, queries, id_column, verify, candidates, form, target_fpr, report,
                                progress)

    def calibrate(self, queries: str | Path, id_column: str = "id", target_fpr: float = DEFAULTS["target_fpr"],
                  verify: bool = False, candidates: int = DEFAULTS["candidates"], progress: bool = False) -> dict:
        """Choose the match / no-match threshold that gives ``target_fpr`` false matches on real query photos
        (some of whose coins may be absent), store it, and return it. From then on every search carries a
        decision. A new calibration replaces the last one whole; with ``verify`` it sets the verified threshold
        too."""
        from coinmatch.evaluation.calibrate import calibrate

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

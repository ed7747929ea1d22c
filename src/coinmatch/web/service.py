"""What the web app does, without HTTP: the catalogues (loaded once per process), the queries a browser made (their
crops kept for the evidence pages), and collection jobs that run in the background. Every search goes through
:class:`coinmatch.api.Catalogue`, as the CLI's do."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from coinmatch import CoinmatchError
from coinmatch.api import Catalogue
from coinmatch.collection import (CoinResult, CollectionCoin, Photo, match_coin, pair_faces, read_zip, search_faces,
                                  searched_at)
from coinmatch.compare import Evidence
from coinmatch.images import load_rgb
from coinmatch.prepare import PreparedCoin, prepare_array
from coinmatch.report import report_csv, report_html
from coinmatch.search import QueryResult

MAX_UPLOAD_BYTES = 40 * 1024**2  # one photo
MAX_ZIP_BYTES = 1024**3  # one zip of a collection
KEPT_QUERIES = 500  # queries whose crops are kept for the evidence pages, the oldest dropped first
KEPT_JOBS = 50
EVIDENCE_CACHE = 64


class NotFound(CoinmatchError):
    """A catalogue, entry, query or job that the server does not hold (HTTP 404)."""


class TooLarge(CoinmatchError):
    """An upload over the size limit (HTTP 413)."""


@dataclass
class Query:
    """A photo identified in the browser: its faces found and cropped, and the photo with the coin outlined."""

    id: str
    faces: dict[str | None, PreparedCoin]
    outlined: dict[str | None, np.ndarray]  # the photo, at most 640 px, the coin's circle drawn (identify only)
    results: dict[str, QueryResult]  # catalogue name -> its answer


@dataclass
class Job:
    """A collection matched in the background; ``results`` grows as it goes."""

    id: str
    coins: list[CollectionCoin]
    settings: dict
    status: str = "queued"  # queued, running, done, failed
    results: list[CoinResult] = field(default_factory=list)
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    searched: str = field(default_factory=searched_at)

    @property
    def done(self) -> int:
        return len(self.results)

    def summary(self) -> dict:
        """The job as ``GET /api/collections/{id}`` answers it."""
        elapsed = ((self.finished or time.time()) - self.started) if self.started else 0.0
        out = {"id": self.id, "status": self.status, "done": self.done, "total": len(self.coins),
               "seconds": round(elapsed, 1), "settings": self.settings, "error": self.error}
        out["matched"] = sum(1 for r in self.results if r.decision == "match")
        return out


def read_upload(data: bytes, name: str, limit: int) -> bytes:
    if len(data) > limit:
        raise TooLarge(f"{name}: {len(data) / 1024**2:.1f} MB; the limit is {limit // 1024**2} MB")
    if not data:
        raise CoinmatchError(f"{name}: file is empty")
    return data


def outlined(rgb: np.ndarray, coin: PreparedCoin, side: int = 640) -> np.ndarray:
    """The photo shrunk to at most ``side`` px with the coin's circle and crop square drawn (or a note that none
    was found)."""
    k = min(1.0, side / max(rgb.shape[:2]))
    small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * k)), max(1, round(rgb.shape[0] * k))),
                       interpolation=cv2.INTER_AREA)
    c = coin.location.circle
    centre, r = (round(c.x * k), round(c.y * k)), max(1, round(c.r * k))
    colour = (0, 200, 60) if coin.location.found else (230, 120, 0)
    width = max(2, round(max(small.shape[:2]) / 200))
    cv2.circle(small, centre, r, colour, width, cv2.LINE_AA)
    half = round(r * 1.04)
    cv2.rectangle(small, (centre[0] - half, centre[1] - half), (centre[0] + half, centre[1] + half), (255, 255, 255), 1)
    return small


class Service:
    """The catalogues served (name -> folder), searched through one :class:`Catalogue` each."""

    def __init__(self, catalogues: dict[str, str | Path], verify: bool = True, top_k: int = 5,
                 backend: str = "onnx"):
        if not catalogues:
            raise CoinmatchError("no catalogue to serve")
        self.catalogues = {name: Catalogue.open(path, backend=backend) for name, path in catalogues.items()}
        self.verify, self.top_k = verify, top_k
        self.max_upload, self.max_zip = MAX_UPLOAD_BYTES, MAX_ZIP_BYTES  # bytes of one photo, of one zip
        self._queries: OrderedDict[str, Query] = OrderedDict()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._evidence: OrderedDict[tuple, Evidence] = OrderedDict()
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coinmatch-collection")

    def warm(self) -> None:
        """Load every catalogue's model now (the first request would otherwise wait for it)."""
        for cat in self.catalogues.values():
            cat.searcher  # noqa: B018 (loads it)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
        for cat in self.catalogues.values():
            cat.close()

    def catalogue(self, name: str | None) -> tuple[str, Catalogue]:
        name = name or next(iter(self.catalogues))
        if name not in self.catalogues:
            raise NotFound(f"no catalogue named {name!r}; served: {', '.join(self.catalogues)}")
        return name, self.catalogues[name]

    # -- identify ---------------------------------------------------------------------------------------
    def identify(self, uploads: dict[str | None, tuple[str, bytes]], catalogue: str | None = None,
                 top_k: int | None = None, verify: bool | None = None) -> Query:
        """One coin from one photo (side None) or its obverse and/or reverse: (file name, bytes) each."""
        name, cat = self.catalogue(catalogue)
        uploads = {side: u for side, u in uploads.items() if u is not None}
        if not uploads:
            raise CoinmatchError("no photo given: choose a photo of the coin (or its obverse and reverse)")
        faces, pictures = {}, {}
        for side, (label, data) in uploads.items():
            rgb = load_rgb(read_upload(data, label, self.max_upload), name=label)
            faces[side] = prepare_array(rgb, label)
            pictures[side] = outlined(rgb, faces[side])
        top_k = top_k or self.top_k
        result = search_faces(cat, faces, top_k, self.verify if verify is None else verify)
        return self._keep(Query(uuid.uuid4().hex, faces, pictures, {name: result}))

    def _keep(self, query: Query) -> Query:
        return self._remember(self._queries, query.id, query, KEPT_QUERIES)

    def _remember(self, held: OrderedDict, key, value, limit: int):
        """Hold ``value`` under ``key``, dropping the oldest beyond ``limit``."""
        with self._lock:
            held[key] = value
            while len(held) > limit:
                held.popitem(last=False)
        return value

    def query(self, query_id: str) -> Query:
        with self._lock:
            if query_id not in self._queries:
                raise NotFound(f"query {query_id[:40]!r} is not held any more (the server keeps the last "
                               f"{KEPT_QUERIES}); identify the photo again")
            return self._queries[query_id]

    def evidence(self, query_id: str, catalogue: str, entry_id: str,
                 row: int | None = None) -> tuple[Query, Evidence]:
        """The evidence for one of a query's candidates (``row``: which of the entry's images; default: the one of
        the query's side, else the one with the most inliers; the evidence says which)."""
        query = self.query(query_id)
        _, cat = self.catalogue(catalogue)
        images = self.entry(catalogue, entry_id)["images"]
        sides = {im["row"]: im["side"] for im in images}
        if row is not None and row not in sides:
            raise NotFound(f"entry {entry_id!r} has no image row {row}")
        face = next(iter(query.faces))
        if row is not None and sides[row] in query.faces:
            face = sides[row]
        elif row is None and face is not None:
            row = next((r for r, side in sides.items() if side == face), None)
        key = (query_id, catalogue, entry_id, row, face)
        with self._lock:
            found = self._evidence.get(key)
        if found is None:
            found = self._remember(self._evidence, key, cat.evidence(query.faces[face], entry_id, row),
                                   EVIDENCE_CACHE)
        return query, found

    # -- catalogue ---------------------------------------------------------------------------------------
    def entries(self, catalogue: str, text: str = "", limit: int = 48, offset: int = 0) -> tuple[int, list[dict]]:
        return self.catalogue(catalogue)[1].entries(text, limit, offset)

    def entry(self, catalogue: str, entry_id: str) -> dict:
        _, cat = self.catalogue(catalogue)
        try:
            return cat.entry(entry_id)
        except CoinmatchError as exc:
            raise NotFound(str(exc)) from exc

    def thumbnail(self, catalogue: str, row: int) -> Path:
        """The stored thumbnail of an image row, as a file inside the catalogue folder."""
        _, cat = self.catalogue(catalogue)
        from coinmatch.catalog.store import Catalogue as Store

        with Store.open(cat.path) as store:
            if not 0 <= row < len(store):
                raise NotFound(f"{catalogue}: no image row {row}")
            thumb = store.images([row])[0].thumb
        if thumb is None:
            raise NotFound(f"{catalogue}: image row {row} has no thumbnail")
        return cat.path / thumb

    def add_entry(self, catalogue: str, entry_id: str, metadata: dict[str, str],
                  uploads: dict[str | None, tuple[str, bytes]]) -> dict:
        _, cat = self.catalogue(catalogue)
        faces = {side: (label, read_upload(data, label, self.max_upload)) for side, (label, data) in uploads.items()}
        return cat.add_entry(entry_id, metadata, image=faces.get(None), obverse=faces.get("obverse"),
                             reverse=faces.get("reverse"))

    # -- collections -------------------------------------------------------------------------------------
    def start_collection(self, uploads: list[tuple[str, bytes]], verify: bool | None = None,
                         top_k: int | None = None) -> Job:
        """Photos (and zips of photos) matched in the background against every catalogue; faces paired by name."""
        photos = []
        for label, data in uploads:
            if label.lower().endswith(".zip"):
                photos += read_zip(read_upload(data, label, self.max_zip), label)
            elif data:
                photos.append(Photo(label, read_upload(data, label, self.max_upload)))
        if not photos:
            raise CoinmatchError("no photos given: choose photos of the coins, or a zip of them")
        settings = {"verify": self.verify if verify is None else verify, "top_k": top_k or self.top_k,
                    "catalogues": ", ".join(self.catalogues)}
        job = Job(uuid.uuid4().hex, pair_faces(photos), settings)
        self._remember(self._jobs, job.id, job, KEPT_JOBS)
        self._worker.submit(self._run, job)
        return job

    def _run(self, job: Job) -> None:
        job.status, job.started = "running", time.time()
        try:
            for i, coin in enumerate(job.coins):
                result = match_coin(self.catalogues, coin, job.settings["top_k"], job.settings["verify"])
                if result.faces:  # its evidence can be opened like an identified photo's
                    self._keep(Query(f"{job.id}-{i}", result.faces, {}, result.results))
                job.results.append(result)
            job.status = "done"
        except Exception as exc:  # the job says why; the server goes on
            job.status, job.error = "failed", str(exc)
        finally:
            job.finished = time.time()

    def job(self, job_id: str) -> Job:
        with self._lock:
            if job_id not in self._jobs:
                raise NotFound(f"collection {job_id[:40]!r} is not held (the server keeps the last {KEPT_JOBS})")
            return self._jobs[job_id]

    def report(self, job_id: str, kind: str) -> str:
        job = self.job(job_id)
        if job.status != "done":
            raise CoinmatchError(f"collection {job_id} is {job.status}: its report is ready once it is done")
        if kind == "csv":
            return report_csv(job.results)
        return report_html(job.results, self.catalogues, job.settings, job.searched)

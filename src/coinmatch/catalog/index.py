"""The vector index of a catalogue: which faiss index fits its size, building one from the stored vectors, and
searching it with the exact vectors' re-ranking where the index is approximate.

The catalogue's exact vectors live in its SQLite file (:mod:`coinmatch.catalog.store`); the index is made from
them and can always be made again. Every index maps faiss ids to the catalogue's image rows (``IDMap2``), so rows
stay the same when entries are removed.

Kinds, chosen by size with ``auto`` (figures: ``benchmarks/index.py``, 1,000,000 vectors of 512 dimensions, 2
cores):

- ``flat``: exact search, every vector compared. Up to :data:`FLAT_UP_TO` vectors.
- ``hnsw``: a graph (HNSW, 32 links a node) over the exact vectors; distances are exact, only the search is
  approximate, so it asks for :data:`SHORTLIST` candidates and keeps the best. Up to :data:`HNSW_UP_TO`.
- ``ivfpq``: inverted lists over product-quantised codes (64 bytes a vector of 512 dimensions), their
  :data:`REFINE_FACTOR` x :data:`SHORTLIST` best re-ranked by 8-bit scalar-quantised copies (a byte a dimension),
  whose :data:`SHORTLIST` best are re-ranked by their exact vectors, read from SQLite: a quarter of HNSW's memory,
  for tens of millions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import faiss
import numpy as np

from coinmatch.catalog.folders import CatalogueError

KINDS = ("auto", "flat", "hnsw", "ivfpq")
FLAT_UP_TO = 10_000
HNSW_UP_TO = 2_000_000
HNSW_LINKS = 32
HNSW_EF_SEARCH = 128  # search breadth of HNSW (at least SHORTLIST is searched; benchmarks/index.py)
IVF_NPROBE = 32  # inverted lists searched a query
PQ_BYTES = 64  # a vector's code: at most this many bytes
SHORTLIST = 100  # candidates an approximate index gives for each query before the best k are kept
REFINE_FACTOR = 10  # IVF-PQ: candidates by the codes for each one re-ranked by the 8-bit copies


def check_kind(kind: str) -> str:
    kind = str(kind).lower()
    if kind not in KINDS:
        raise CatalogueError(f"index {kind!r}: choose one of {', '.join(KINDS)}")
    return kind


def choose(kind: str, n: int) -> str:
    """The index kind for ``n`` vectors: ``kind`` itself unless it is ``auto``."""
    if check_kind(kind) != "auto":
        return kind
    return "flat" if n <= FLAT_UP_TO else "hnsw" if n <= HNSW_UP_TO else "ivfpq"


def factory(kind: str, n: int, dim: int) -> str:
    """The faiss factory string of an index of this kind (not ``auto``) for ``n`` vectors of ``dim``."""
    if kind == "flat":
        return "IDMap2,Flat"
    if kind == "hnsw":
        return f"IDMap2,HNSW{HNSW_LINKS}"
    nlist = max(16, min(65536, 2 ** round(math.log2(2 * math.sqrt(max(n, 1))))))
    m = max(d for d in range(1, PQ_BYTES + 1) if dim % d == 0)  # one byte a sub-vector
    return f"IDMap2,IVF{nlist},PQ{m},Refine(SQ8)"


def _inner(index: faiss.Index) -> faiss.Index:
    """The index under the id map (and under IVF-PQ's refinement: the IVF itself)."""
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else faiss.downcast_index(index)
    return faiss.downcast_index(inner.base_index) if isinstance(inner, faiss.IndexRefine) else inner


def kind_of(index: faiss.Index) -> str:
    inner = _inner(index)
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVF):
        return "ivfpq"
    return "flat"


def configure(index: faiss.Index) -> faiss.Index:
    """Set the search breadth of an approximate index (not kept in the file)."""
    inner = _inner(index)
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif isinstance(inner, faiss.IndexIVF):
        inner.nprobe = IVF_NPROBE
        faiss.downcast_index(index.index).k_factor = REFINE_FACTOR
    return index


def make(kind: str, dim: int, rows: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    """An index of ``kind`` (not ``auto``) holding these vectors under these row ids. An IVF-PQ index is trained
    on (up to 64 a list of) the vectors themselves; with too few to train one, the index is flat."""
    name = factory(kind, len(rows), dim)
    index = faiss.index_factory(dim, name, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        nlist = _inner(index).nlist
        if len(vectors) < 39 * nlist:
            return make("flat", dim, rows, vectors)
        sample = vectors[np.random.default_rng(0).choice(len(vectors), min(len(vectors), 64 * nlist),
                                                         replace=False)]
        index.train(np.ascontiguousarray(sample, np.float32))
    if len(rows):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(rows, np.int64))
    return configure(index)


def exact(index: faiss.Index) -> bool:
    """Whether the index's scores are the vectors' exact inner products."""
    return kind_of(index) != "ivfpq"


def search(index: faiss.Index, queries: np.ndarray, k: int,
           exact_vectors: Callable[[list[int]], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inner products and rows of the ``k`` nearest, best first (rows -1 and scores -inf where fewer). An
    approximate index is asked for :data:`SHORTLIST` candidates; where its scores are approximate they are
    replaced by the exact ones (``exact_vectors(rows)``) before the best ``k`` are kept."""
    if kind_of(index) == "flat":
        return index.search(queries, k)
    scores, rows = index.search(queries, max(k, SHORTLIST))
    if not exact(index):
        wanted = sorted({int(r) for r in rows.ravel() if r >= 0})
        if wanted:
            found = dict(zip(wanted, exact_vectors(wanted)))
            for i, q in enumerate(queries):
                ok = rows[i] >= 0
                scores[i, ok] = np.stack([found[int(r)] for r in rows[i, ok]]) @ q
    order = np.argsort(-np.where(rows >= 0, scores, -np.inf), axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


def remove(index: faiss.Index, rows: list[int]) -> bool:
    """Take these rows out of the index in place; False where the index cannot (HNSW: it is made again)."""
    try:
        index.remove_ids(faiss.IDSelectorBatch(np.asarray(rows, np.int64)))
    except RuntimeError:
        return False
    return True


def read(path: str) -> faiss.Index:
    try:
        return configure(faiss.read_index(path))
    except RuntimeError as exc:
        raise CatalogueError(f"{path}: damaged vector index ({str(exc).splitlines()[0]})") from exc

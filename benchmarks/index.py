"""The vector index at archive sizes: each kind a catalogue can choose (coinmatch.catalog.index), built and searched
as the catalogue builds and searches it, against exact search.

    .venv/bin/python benchmarks/index.py [--sizes 100000 1000000] [--queries 300] [--catalogue DIR]

Vectors: the real vectors of a catalogue built with the default model (512 dimensions; by default the real-pairs
catalogue that benchmarks/retrieval.py builds, 955 photos), each drawn again with Gaussian noise until there are
``size`` of them: ``base + noise`` with noise of norm 0.8 (so a vector's nearest neighbours lie about as close as
the real vectors' do: both printed), made unit length. Queries: other draws of the same bases with noise of norm
0.3 (a second photograph of a catalogued coin). Truth: the exact ten nearest (inner product). Each kind is searched
one query at a time through ``index.search`` (the catalogue's own function: a shortlist of 100, re-ranked by the
exact vectors where the index's scores are approximate; for IVF-PQ the exact vectors are read from a SQLite
``vectors`` table of all ``size`` vectors, as the catalogue keeps them). Also timed: the batch of 20 searches of
neighbours that search's local density makes for a query's shortlist (once per shortlisted entry; then kept).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from common import WORK, format_table, save_results
from coinmatch.catalog import index as vindex
from coinmatch.catalog.store import DB_NAME, SCHEMA, Catalogue
from coinmatch.search import DENSITY_K

DEFAULT_CATALOGUE = WORK / "catalogue-coinmatch_default_(the_bundled_recipe)"


def draw(bases: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    which = rng.integers(0, len(bases), n)
    x = np.empty((n, bases.shape[1]), np.float32)
    for s in range(0, n, 100_000):
        part = bases[which[s:s + 100_000]]
        g = rng.standard_normal(part.shape, dtype=np.float32)
        part = part + noise * g / np.linalg.norm(g, axis=1, keepdims=True)
        x[s:s + 100_000] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return x, which


def tenth_neighbour(x: np.ndarray, sample: int = 200) -> float:
    """Mean cosine of a vector to its tenth nearest other vector (a sample of vectors)."""
    sims = x[:sample] @ x.T
    return float(np.mean(np.sort(sims, axis=1)[:, -11]))


def sqlite_vectors(x: np.ndarray, folder: Path) -> Catalogue:
    """A catalogue database holding only these vectors (rows 0..n-1), read back through the catalogue's code."""
    db = sqlite3.connect(folder / DB_NAME)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO meta VALUES ('dim', ?)", (str(x.shape[1]),))
    with db:
        db.executemany("INSERT INTO vectors VALUES (?, ?)", ((i, v.tobytes()) for i, v in enumerate(x)))
    return Catalogue(folder, db)


def measure(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, x: np.ndarray, exact_vectors,
            setting: dict) -> dict:
    inner = vindex._inner(index)
    for key, value in setting.items():
        if key == "efSearch":
            inner.hnsw.efSearch = value
        else:
            setattr(inner, key, value)
    vindex.search(index, queries[:3], 10, exact_vectors)
    found, times = [], []
    for q in queries:  # one query at a time, as a user asks
        t = time.perf_counter()
        _, r = vindex.search(index, q[None], 10, exact_vectors)
        times.append(time.perf_counter() - t)
        found.append(r[0])
    recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)])
    t = time.perf_counter()
    reps = max(1, len(queries) // 10)
    for i in range(reps):  # local density: a shortlist's 20 rows' neighbours, one batch
        vindex.search(index, x[i * 20:(i + 1) * 20], 2 * DENSITY_K + 1, exact_vectors)
    density = 1000 * (time.perf_counter() - t) / reps
    return {"setting": ", ".join(f"{k} {v}" for k, v in setting.items()) or "-",
            "ms_median": 1000 * float(np.median(times)), "ms_p95": 1000 * float(np.percentile(times, 95)),
            "recall@10": float(recall), "density_ms": density}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    ap.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"])
    ap.add_argument("--name", default="index", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    if not args.catalogue.exists():
        raise SystemExit(f"{args.catalogue}: build it first (benchmarks/retrieval.py) or give --catalogue")
    with Catalogue.open(args.catalogue) as cat:
        bases = cat.vectors()
    rng = np.random.default_rng(0)
    rows, notes = [], [f"real vectors: {len(bases)} from {args.catalogue.name}, 10th neighbour at cosine "
                       f"{tenth_neighbour(bases):.3f}"]
    for n in args.sizes:
        x, which = draw(bases, n, 0.8, rng)
        queries, _ = draw(bases, args.queries, 0.3, rng)
        sims = queries @ x.T
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        truth = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), axis=1), 1)
        del sims
        notes.append(f"{n:,} drawn: 10th neighbour at cosine {tenth_neighbour(x):.3f}")
        print(notes[-1], flush=True)
        with tempfile.TemporaryDirectory(dir=WORK) as tmp:
            store = sqlite_vectors(x, Path(tmp))
            for kind, settings in (("flat", [{}]), ("hnsw", [{"efSearch": e} for e in (64, 128, 256)]),
                                   ("ivfpq", [{"nprobe": p} for p in (16, 32, 64)])):
                if kind not in args.kinds:
                    continue
                t = time.perf_counter()
                index = vindex.make(kind, x.shape[1], np.arange(n), x)
                build = time.perf_counter() - t
                mb = len(faiss.serialize_index(index)) / 2**20
                for setting in settings:
                    rows.append({"vectors": n, "index": kind, "build_s": build, "index_mb": mb,
                                 **measure(index, queries, truth, x, store.vectors, setting)})
                    print(rows[-1], flush=True)
                del index
            store.close()
    text = format_table(rows, [("vectors", "vectors", ">9"), ("index", "index", "<6"), ("setting", "setting", "<13"),
                               ("build_s", "build s", "8.1f"), ("index_mb", "index MB", "9.0f"),
                               ("ms_median", "ms/query", "9.2f"), ("ms_p95", "p95 ms", "7.2f"),
                               ("recall@10", "recall@10", "10.3f"), ("density_ms", "density ms", "11.1f")])
    save_results(args.name, rows, text + "\n" + "\n".join(notes))
    print(text)


if __name__ == "__main__":
    main()

"""Catalogues of millions: index build time, memory and search latency, exact (Flat) against HNSW32; and the
cost of the angle vectors that a model of several angles stores (SQLite size, and reading and scoring a
shortlist of 20 angle by angle); and what search's local density costs a query whose 20 shortlisted entries
have none kept yet (search.py: their neighbours found in one batched index search, then, with angle vectors,
those 20 x 20 neighbours read and scored angle by angle). Kept densities cost nothing.

    .venv/bin/python benchmarks/scale.py [--sizes 100000 1000000] [--dim 128] [--angle-sizes 100000 1000000]

Vectors are random unit vectors in the trained models' 128 dimensions (the index does not care what
made them); queries are catalogue vectors with noise added, so each has a known true neighbour.
HNSW's recall@1 is measured against that neighbour. Angle vectors: 16 per image, float16, in the catalogue's
own table, read through the catalogue's own code for a random shortlist of 20 rows.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from common import format_table, save_results
from coinmatch.catalog.store import DB_NAME, HNSW_EF_SEARCH, SCHEMA, Catalogue
from coinmatch.align import cyclic_similarity
from coinmatch.search import DENSITY_K

SHORTLIST = 20  # search's default --candidates


def angle_costs(n: int, dim: int, angles: int, queries: int, rng: np.random.Generator,
                shortlists: np.random.Generator) -> dict:
    """Write n images' angle vectors into a catalogue database, then time reading and scoring shortlists."""
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / "out") as tmp:
        db = sqlite3.connect(Path(tmp) / DB_NAME)
        db.executescript(SCHEMA)
        db.execute("INSERT INTO meta VALUES ('dim', ?)", (str(dim),))
        t = time.perf_counter()
        with db:
            for start in range(0, n, 10_000):
                v = rng.standard_normal((min(10_000, n - start), angles, dim), dtype=np.float32)
                v /= np.linalg.norm(v, axis=2, keepdims=True)
                db.executemany("INSERT INTO angles VALUES (?, ?)",
                               ((start + i, a.astype(np.float16).tobytes()) for i, a in enumerate(v)))
        write = time.perf_counter() - t
        size = (Path(tmp) / DB_NAME).stat().st_size
        cat = Catalogue(Path(tmp), db)
        query = rng.standard_normal((angles, dim), dtype=np.float32)
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        cat.angle_vectors(rng.choice(n, SHORTLIST, replace=False))  # warm
        t = time.perf_counter()
        for _ in range(queries):
            cyclic_similarity(query[None], cat.angle_vectors(rng.choice(n, SHORTLIST, replace=False)))
        per_query = 1000 * (time.perf_counter() - t) / queries
        t = time.perf_counter()
        near = 2 * DENSITY_K
        for _ in range(queries // 10):  # density: the shortlist and its rows' neighbours, read in one go as search
            wanted = cat.angle_vectors(shortlists.choice(n, SHORTLIST * (1 + near), replace=False))  # reads them
            for k in range(SHORTLIST):  # each row against its own neighbours
                cyclic_similarity(wanted[k][None], wanted[SHORTLIST + k * near:SHORTLIST + (k + 1) * near])
        density = 1000 * (time.perf_counter() - t) / (queries // 10)
        db.close()
    return {"entries": n, "write_s": write, "sqlite_mb": size / 2**20, "ms_per_query": per_query,
            "density_ms": density}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw-max", type=int, default=1_000_000)
    ap.add_argument("--angle-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--angles", type=int, default=16)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    shortlists = np.random.default_rng(1)  # density's draws, apart: the vectors stay those of earlier runs
    rows = []
    for n in args.sizes:
        x = rng.standard_normal((n, args.dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        truth = rng.choice(n, args.queries, replace=False)
        q = x[truth] + 0.05 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        for factory in ("Flat", "HNSW32"):
            if factory != "Flat" and n > args.hnsw_max:
                continue
            index = faiss.index_factory(args.dim, factory, faiss.METRIC_INNER_PRODUCT)
            if factory.startswith("HNSW"):
                index.hnsw.efSearch = HNSW_EF_SEARCH  # as the catalogue sets it
            t = time.perf_counter()
            index.add(x)
            build = time.perf_counter() - t
            index.search(q[:5], 5)
            t = time.perf_counter()
            for i in range(args.queries):  # one query at a time, as a user asks
                _, ids = index.search(q[i:i + 1], 5)
            per_query = 1000 * (time.perf_counter() - t) / args.queries
            t = time.perf_counter()
            for i in range(0, args.queries, 10):  # density: a shortlist's 20 rows' neighbours, one batch
                index.search(x[shortlists.choice(n, SHORTLIST, replace=False)], 2 * DENSITY_K + 5)
            density = 1000 * (time.perf_counter() - t) / len(range(0, args.queries, 10))
            _, top = index.search(q, 1)
            rows.append({"entries": n, "index": factory, "build_s": build, "ms_per_query": per_query,
                         "density_ms": density,
                         "recall@1": float(np.mean(top[:, 0] == truth)),
                         "vector_mb": n * args.dim * 4 / 2**20})
            print(rows[-1], flush=True)
    text = format_table(rows, [("entries", "entries", ">10"), ("index", "index", "<8"), ("build_s", "build s", "8.1f"),
                               ("ms_per_query", "ms/query", "9.2f"), ("density_ms", "density ms", "11.2f"),
                               ("recall@1", "recall@1", "9.3f"),
                               ("vector_mb", "vectors MB", "10.0f")])
    angle_rows = []
    for n in args.angle_sizes:
        angle_rows.append(angle_costs(n, args.dim, args.angles, args.queries, rng, shortlists))
        print(angle_rows[-1], flush=True)
    if angle_rows:
        text += (f"\n\nangle vectors ({args.angles} x {args.dim} float16 per image): SQLite, and one query's shortlist "
                 f"of {SHORTLIST} read and scored (density: with {2 * DENSITY_K} neighbours each)\n")
        text += format_table(angle_rows, [("entries", "entries", ">10"), ("write_s", "write s", "8.1f"),
                                          ("sqlite_mb", "SQLite MB", "10.0f"),
                                          ("ms_per_query", "ms/query", "9.2f"),
                                          ("density_ms", "density ms", "11.2f")])
    print(text)
    save_results("scale", rows + [{"angle_vectors": True, **r} for r in angle_rows], text)


if __name__ == "__main__":
    main()

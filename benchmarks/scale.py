"""The angle vectors of a catalogue of millions: what a model of several angles stores (SQLite size) and what
reading and scoring a query's shortlist of 20 angle by angle costs, and search's local density for a shortlist
whose 20 entries have none kept yet (their 20 x 20 neighbours read and scored angle by angle). The index itself:
benchmarks/index.py.

    .venv/bin/python benchmarks/scale.py [--sizes 100000] [--dim 512]

Angle vectors: 16 per image, float16, random unit vectors (reading and scoring do not care what made them), in the
catalogue's own table, read through the catalogue's own code for a random shortlist of 20 rows.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from common import format_table, save_results
from coinmatch.catalog.store import DB_NAME, SCHEMA, Catalogue
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
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    ap.add_argument("--angles", type=int, default=16)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    shortlists = np.random.default_rng(1)  # density's draws, apart
    rows = []
    for n in args.sizes:
        rows.append(angle_costs(n, args.dim, args.angles, args.queries, rng, shortlists))
        print(rows[-1], flush=True)
    text = (f"angle vectors ({args.angles} x {args.dim} float16 per image): SQLite, and one query's shortlist "
            f"of {SHORTLIST} read and scored (density: with {2 * DENSITY_K} neighbours each)\n")
    text += format_table(rows, [("entries", "entries", ">10"), ("write_s", "write s", "8.1f"),
                                ("sqlite_mb", "SQLite MB", "10.0f"), ("ms_per_query", "ms/query", "9.2f"),
                                ("density_ms", "density ms", "11.2f")])
    print(text)
    save_results("scale", rows, text)


if __name__ == "__main__":
    main()

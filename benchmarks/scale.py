"""Catalogues of millions: index build time, memory and search latency, exact (Flat) against HNSW32.

    .venv/bin/python benchmarks/scale.py [--sizes 100000 1000000] [--dim 128]

Vectors are random unit vectors in the trained models' 128 dimensions (the index does not care what
made them); queries are catalogue vectors with noise added, so each has a known true neighbour.
HNSW's recall@1 is measured against that neighbour.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from common import format_table, save_results
from coinmatch.catalog.store import HNSW_EF_SEARCH


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw-max", type=int, default=1_000_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
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
            _, top = index.search(q, 1)
            rows.append({"entries": n, "index": factory, "build_s": build, "ms_per_query": per_query,
                         "recall@1": float(np.mean(top[:, 0] == truth)),
                         "vector_mb": n * args.dim * 4 / 2**20})
            print(rows[-1], flush=True)
    text = format_table(rows, [("entries", "entries", ">10"), ("index", "index", "<8"), ("build_s", "build s", "8.1f"),
                               ("ms_per_query", "ms/query", "9.2f"), ("recall@1", "recall@1", "9.3f"),
                               ("vector_mb", "vectors MB", "10.0f")])
    print(text)
    save_results("scale", rows, text)


if __name__ == "__main__":
    main()

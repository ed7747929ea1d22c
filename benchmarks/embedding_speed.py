"""Embedding throughput, ONNX Runtime vs torch, in one run; and search latency per query.

    .venv/bin/python benchmarks/embedding_speed.py [--images 256]

Throughput counts the network only (crops already in memory), batches of 32, after a warm-up.
Search latency: the query embedded, then the catalogue searched, for the real-pairs catalogue.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import pairs_manifests, save_results, WORK
from coinmatch.catalog.manifest import read_manifest
from coinmatch.models.modelfile import load_model
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_photo


def throughput(embedder: Embedder, crops: list[np.ndarray], repeats: int = 2) -> float:
    embedder.embed(crops[:32])  # warm-up
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        embedder.embed(crops)
        best = max(best, len(crops) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=256)
    args = ap.parse_args()
    cat_csv, q_csv = pairs_manifests()
    faces = [f for e in read_manifest(cat_csv) for f in e.faces][: args.images]
    t = time.perf_counter()
    crops = [prepare_photo(f.path).crop for f in faces]
    prep_ms = 1000 * (time.perf_counter() - t) / len(crops)
    model = load_model()
    rows = [{"what": "prepare (load + find coin + crop)", "value": prep_ms, "unit": "ms/image"}]
    for backend in ("onnx", "torch"):
        e = Embedder(model, backend=backend)
        rows.append({"what": f"embed {backend} ({model.config.backbone}, {model.config.image_size} px, "
                             f"{torch.get_num_threads()} threads)", "value": throughput(e, crops), "unit": "images/s"})

    from coinmatch.catalog.build import build_catalogue
    from coinmatch.search import Searcher
    from coinmatch.verify import extract_features_blob

    root = WORK / "pairs-catalogue"
    build_catalogue(root, cat_csv, features=extract_features_blob, progress=True)
    searcher = Searcher(root)
    queries = [f.path for e in read_manifest(q_csv) for f in e.faces]
    prepared = [prepare_photo(p) for p in queries]
    vectors = searcher.embedder.embed([p.crop for p in prepared])
    t = time.perf_counter()
    for v in vectors:
        searcher.candidates(v[None], 5)
    rows.append({"what": f"index search only ({len(searcher.catalogue)} images, top 5)",
                 "value": 1000 * (time.perf_counter() - t) / len(vectors), "unit": "ms/query"})
    plain = Searcher(root, density=False)  # no local density (search.py) taken off
    t = time.perf_counter()
    for p in prepared:
        plain.search_prepared([p], top_k=5)
    plain.close()
    rows.append({"what": "embed + search --no-density (coin already cropped)",
                 "value": 1000 * (time.perf_counter() - t) / len(prepared), "unit": "ms/query"})
    for verify in (False, True):  # the first pass finds each shortlisted entry's density; later ones reuse it
        t = time.perf_counter()
        for p in prepared:
            searcher.search_prepared([p], top_k=5, verify=verify)
        rows.append({"what": "embed + search" + (" + verify top 20" if verify else "") + " (coin already cropped)",
                     "value": 1000 * (time.perf_counter() - t) / len(prepared), "unit": "ms/query"})
    t = time.perf_counter()
    for p in queries:
        searcher.search([p], top_k=5)
    rows.append({"what": "whole query from file (load, find coin, embed, search)",
                 "value": 1000 * (time.perf_counter() - t) / len(queries), "unit": "ms/query"})
    text = "\n".join(f"{r['what']:<75} {r['value']:9.1f} {r['unit']}" for r in rows)
    print(text)
    save_results("embedding_speed", rows, text)


if __name__ == "__main__":
    main()

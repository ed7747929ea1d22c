"""What each model costs: network throughput (ONNX Runtime and torch), a catalogue build from files, and a query.

    .venv/bin/python benchmarks/embedding_speed.py [--images 256] [--models builtin:efficientnet_lite0 default]

For each model (the untrained ImageNet one and the bundled default by default; ``default`` names the bundled one):
throughput counts the network only (crops already in memory, batches of 32, after a warm-up, the best of two);
the build is `Catalogue.build` of the real-pairs catalogue (955 photos: load, find the coin, embed, local
features, index); a query is `cat.search` of each of the 84 query photos from file, with and without
verification of the top 20 (the first pass over the queries warms each shortlisted entry's density).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import WORK, pairs_manifests, save_results
from coinmatch import Catalogue
from coinmatch.catalog.manifest import read_manifest
from coinmatch.models.modelfile import DEFAULT_MODEL_FILE, IMAGENET_MODEL, load_model
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


def per_query_ms(cat: Catalogue, photos: list[str], verify: bool) -> float:
    t = time.perf_counter()
    for p in photos:
        cat.search(p, top_k=5, verify=verify)
    return 1000 * (time.perf_counter() - t) / len(photos)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--models", nargs="+", default=[IMAGENET_MODEL, "default"])
    args = ap.parse_args()
    cat_csv, q_csv = pairs_manifests()
    all_faces = [f for e in read_manifest(cat_csv) for f in e.faces]
    faces = all_faces[: args.images]
    t = time.perf_counter()
    crops = [prepare_photo(f.path).crop for f in faces]
    rows = [{"what": "prepare (load + find coin + crop)", "value": 1000 * (time.perf_counter() - t) / len(crops),
             "unit": "ms/image"}]
    queries = [str(f.path) for e in read_manifest(q_csv) for f in e.faces]
    for name in args.models:
        model = load_model(DEFAULT_MODEL_FILE if name == "default" else name)
        label = f"{name} ({model.config.image_size} px, {model.config.rotations} angle(s))"
        for backend in ("onnx", "torch"):
            rows.append({"what": f"{label}: embed, {backend}, {torch.get_num_threads()} threads",
                         "value": throughput(Embedder(model, backend=backend), crops), "unit": "images/s"})
        t = time.perf_counter()
        cat = Catalogue.build(WORK / f"speed-{name.replace(':', '_')}", cat_csv, model=model.source)
        rows.append({"what": f"{label}: catalogue build from files, with local features",
                     "value": len(all_faces) / (time.perf_counter() - t), "unit": "photos/s"})
        with cat:
            per_query_ms(cat, queries[:8], verify=False)  # warm-up: the model's session
            for verify in (False, True):
                rows.append({"what": f"{label}: query from file" + (", verified top 20" if verify else ""),
                             "value": per_query_ms(cat, queries, verify), "unit": "ms/query"})
    text = "\n".join(f"{r['what']:<96} {r['value']:9.1f} {r['unit']}" for r in rows)
    print(text)
    save_results("embedding_speed", rows, text)


if __name__ == "__main__":
    main()

"""Where a catalogue build's time goes, stage by stage (milliseconds per image, one process, 2 cores).

    .venv/bin/python benchmarks/build_profile.py [--images 200]

The first ``--images`` photos of the real-pairs catalogue (benchmarks/common.py), each stage timed on its own in
the order a build runs them: decode (the safe loader), find the coin, crop, the network (ImageNet Lite0 and the
default model, batches of 32), local features (RootSIFT), thumbnail, and the duplicate keys (the SQLite and
faiss write is not timed). The starting point for faster builds (issue: archives of millions).
"""

from __future__ import annotations

import argparse
import time

from common import pairs_manifests, save_results
from coinmatch.catalog.faces import thumbnail
from coinmatch.catalog.manifest import read_manifest
from coinmatch.dedup import photo_hash, pixel_digest
from coinmatch.images import load_rgb
from coinmatch.models.modelfile import DEFAULT_MODEL_FILE, IMAGENET_MODEL, load_model
from coinmatch.models.runtime import Embedder
from coinmatch.segment import crop_coin, locate_coin
from coinmatch.verify import extract_features_blob


def timed(label: str, fn, items, rows: list[dict]):
    t = time.perf_counter()
    out = [fn(x) for x in items]
    rows.append({"stage": label, "ms_per_image": 1000 * (time.perf_counter() - t) / len(items)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    args = ap.parse_args()
    cat_csv, _ = pairs_manifests()
    paths = [f.path for e in read_manifest(cat_csv) for f in e.faces][: args.images]
    rows: list[dict] = []
    images = timed("decode (safe loader)", load_rgb, paths, rows)
    places = timed("find the coin", locate_coin, images, rows)
    crops = timed("crop", lambda t: crop_coin(*t, mask=False), list(zip(images, places)), rows)
    for name in (IMAGENET_MODEL, DEFAULT_MODEL_FILE):
        embedder = Embedder(load_model(name))
        embedder.embed(crops[:32])  # warm-up
        t = time.perf_counter()
        embedder.embed_with_angles(crops)
        label = "network: ImageNet Lite0 (1 angle)" if name == IMAGENET_MODEL else "network: default (16 angles)"
        rows.append({"stage": label, "ms_per_image": 1000 * (time.perf_counter() - t) / len(crops)})
    timed("local features (RootSIFT)", extract_features_blob, crops, rows)
    timed("thumbnail", thumbnail, crops, rows)
    timed("duplicate keys", lambda im: (pixel_digest(im), photo_hash(im)), images, rows)
    text = "\n".join(f"{r['stage']:<36} {r['ms_per_image']:8.1f} ms/image" for r in rows)
    text += f"\n({len(paths)} photos of about 300 px from {cat_csv.name}; the SQLite and faiss write is not timed)"
    print(text)
    save_results("build_profile", rows, text)


if __name__ == "__main__":
    main()

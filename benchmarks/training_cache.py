"""Training throughput: images held in memory (decoded, cropped, resized once) against decoding
from disk and finding the coin on every step, in one run, same model and augmentations.

    .venv/bin/python benchmarks/training_cache.py [--batches 12] [--images 600] [--workers 2]

Both arms run real training steps (forward, triplet loss, backward, optimizer) on the OCRE photos.
It also times the next run's start: the prepared cache read back from disk instead of built again, and the
cache built by ``--workers`` processes (``train --workers``), checked to be the same.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from unittest import mock

import cv2
import numpy as np
import torch

from common import DATA, save_results
from coinmatch.catalog.manifest import read_manifest
from coinmatch.models.network import CoinEmbedder
from coinmatch.prepare import prepare_photo
from coinmatch.training.augment import augment
from coinmatch.training.cache import cache_size, load_cache
from coinmatch.training.loop import freeze_early_layers
from coinmatch.training.losses import build_loss


def steps(net, loss_fn, miner, opt, make_batch, batches: int) -> float:
    t = time.perf_counter()
    n = 0
    for b in range(batches):
        x, labels = make_batch(b)
        emb = net(x)
        loss = loss_fn(emb, labels, miner(emb, labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(x)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    manifest = DATA / "ancient-coins" / "ocre.csv"
    paths = [f.path for e in read_manifest(manifest) for f in e.faces][: args.images]
    # an empty disk cache, for this block only: the first load builds, the second reads
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"COINMATCH_CACHE": tmp}):
        t = time.perf_counter()
        cache = load_cache(manifest, cache_size(args.size), limit=args.images, progress=False, dedupe=False)
        cache_s = time.perf_counter() - t
        t = time.perf_counter()
        again = load_cache(manifest, cache_size(args.size), limit=args.images, progress=False, dedupe=False)
        reread_s = time.perf_counter() - t
        assert np.array_equal(again.images, cache.images)
    t = time.perf_counter()
    spread = load_cache(manifest, cache_size(args.size), limit=args.images, progress=False, dedupe=False, disk=False,
                        workers=args.workers)
    workers_s = time.perf_counter() - t
    assert np.array_equal(spread.images, cache.images)
    torch.manual_seed(0)
    net = CoinEmbedder("efficientnet_lite0", dim=128)
    freeze_early_layers(net, 2)
    loss_fn, miner = build_loss("triplet", len(paths), 128)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    rng = np.random.default_rng(0)
    coins = 24  # x 2 views = batches of 48

    def to_tensor(views):
        return torch.from_numpy(np.stack(views).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)

    def from_memory(b):
        idx = rng.choice(len(cache), coins, replace=False)
        views = [augment(cache.images[i], rng, args.size) for i in idx for _ in range(2)]
        return to_tensor(views), torch.from_numpy(np.repeat(idx, 2))

    def from_disk(b):
        idx = rng.choice(len(paths), coins, replace=False)
        views = []
        for i in idx:
            for _ in range(2):  # each view decoded, located and resized again, as a naive loader does
                crop = prepare_photo(paths[i]).crop
                views.append(augment(cv2.resize(crop, (cache_size(args.size),) * 2, interpolation=cv2.INTER_AREA),
                                     rng, args.size))
        return to_tensor(views), torch.from_numpy(np.repeat(idx, 2))

    net.train()
    steps(net, loss_fn, miner, opt, from_memory, 2)  # warm-up
    mem = steps(net, loss_fn, miner, opt, from_memory, args.batches)
    disk = steps(net, loss_fn, miner, opt, from_disk, args.batches)
    rows = [{"what": f"cache {len(cache)} OCRE images once (decode, find coin, resize)", "value": cache_s, "unit": "s"},
            {"what": "the same cache read back from disk by the next run", "value": reread_s, "unit": "s"},
            {"what": f"the same cache built by {args.workers} worker processes", "value": workers_s, "unit": "s"},
            {"what": "training steps, in-memory cache", "value": mem, "unit": "images/s"},
            {"what": "training steps, decoding from disk every step", "value": disk, "unit": "images/s"},
            {"what": "speed-up of the cache", "value": mem / disk, "unit": "x"}]
    text = "\n".join(f"{r['what']:<60} {r['value']:8.2f} {r['unit']}" for r in rows)
    print(text)
    save_results("training_cache", rows, text)


if __name__ == "__main__":
    main()

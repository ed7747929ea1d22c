"""Where on the coin: the untrained network's feature maps compared cell by cell (how `train --cells` chose its map).

    .venv/bin/python benchmarks/spatial.py [--seeds 1] [--reuse] [--name spatial]

The pooled vector, rings and all, forgets where on the coin each feature lies, and two coins of one design differ in
just that. On the euro pairs (84 queries, 955 entries, every query found and cropped as search does), as photographed
and catalogue-like (the angles drawn with seeds 0 .. N-1), this keeps the grey, untrained ImageNet Lite0's last four
maps (block 4: 14 x 14 x 112 at 224 px; blocks 5 and 6: 7 x 7 x 192 and x 320; the head: 7 x 7 x 1280) and scores
each query against each entry by the mean cosine of their cells on the crop's inscribed circle, the query at the
best of 16 angles against the entry as it lies. Each cell is unit length, raw or centred and PCA-whitened (64 or 256
dimensions) on the catalogue's own cells (no labels), then unit length again. It reports recall@1 and the open-set
figures for each map and whitening. This first look chose the cell descriptors' map and size (block 5, 64) on this
test, so benchmarks/seeds.py measures the trained model's cells on both real tests at ten draws. The maps are kept in
out/benchmarks/ (``--reuse``); about 8 minutes on 2 cores at one seed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from aligned import scores
from common import WORK, format_table, save_results
from seeds import query_crops
from coinmatch.models.network import CoinEmbedder, disc_cells
from coinmatch.models.runtime import to_batch
from coinmatch.training.cells import cell_whitening

ANGLES = 16
SIZE = 224
STAGES = 4  # Lite0: block 4, blocks 5 and 6, the head
NAMES = ("block 4", "block 5", "block 6", "head")
WHITENINGS = (None, 64, 256)


def cell_maps(net: CoinEmbedder, crops: list[np.ndarray], angles: int, batch: int = 32) -> list[np.ndarray]:
    """Per map: N x angles x cells x C float16, the crops (resized as the runtime resizes) turned by 360 k / angles
    degrees."""
    out: list[list[np.ndarray]] = [[] for _ in range(STAGES)]
    with torch.no_grad():
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(to_batch(crops[i:i + batch], SIZE))
            for s, m in enumerate(net.feature_maps(net.views(x, rotations=angles), STAGES)):
                m = m.view(angles, x.shape[0], m.shape[1], -1).permute(1, 0, 3, 2)
                out[s].append(m.numpy().astype(np.float16))
    return [np.concatenate(o) for o in out]


def unit(x: np.ndarray) -> np.ndarray:
    """Unit length along the last axis; a cell with no response stays zero (common.unit would divide by 0)."""
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)


def on_disc(cells: int) -> np.ndarray:
    """A square map's cells on the crop's inscribed circle, as the network keeps them (network.disc_cells)."""
    side = int(round(np.sqrt(cells)))
    keep = np.zeros(cells, bool)
    keep[disc_cells(side, side).numpy()] = True
    return keep


def transform(cat: np.ndarray, keep: np.ndarray, whiten: int | None):
    """Cells (... x C) -> unit cells: PCA-whitened to ``whiten`` dimensions on the catalogue's disc cells
    (training.cells.cell_whitening), or raw."""
    if whiten is None:
        return unit
    mean, projection = cell_whitening(unit(cat[:, 0][:, keep].reshape(-1, cat.shape[-1]).astype(np.float64)), whiten)
    return lambda m: unit((unit(m) - mean) @ projection)


def cell_scores(q: np.ndarray, c: np.ndarray, t, keep: np.ndarray) -> np.ndarray:
    """Queries x entries: the mean cosine of the disc's cells, each query at its best angle."""
    entries = t(c[:, 0][:, keep].astype(np.float32)).reshape(len(c), -1)
    return np.max([t(q[:, k][:, keep].astype(np.float32)).reshape(len(q), -1) @ entries.T / keep.sum()
                   for k in range(q.shape[1])], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1, help="draws of the catalogue-like angles (seeds 0 .. N-1)")
    ap.add_argument("--reuse", action="store_true", help="read the maps of an earlier run back")
    ap.add_argument("--name", default="spatial", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    torch.set_num_threads(2)
    sets = query_crops("euro", args.seeds)
    path = WORK / f"spatial-euro-{args.seeds}.npz"
    if args.reuse and path.exists():
        z = np.load(path)
        maps = {k: z[k] for k in z.files}
    else:
        t = time.perf_counter()
        net = CoinEmbedder("efficientnet_lite0", grey=True).eval()
        maps = {f"cat/{s}": m for s, m in enumerate(cell_maps(net, sets["cat"], 1))}
        for form, crops in sets["crops"].items():
            maps.update({f"{form}/{s}": m for s, m in enumerate(cell_maps(net, crops, ANGLES))})
        print(f"maps in {time.perf_counter() - t:.0f} s", flush=True)
        WORK.mkdir(parents=True, exist_ok=True)
        np.savez(path, **maps)
    rows = []
    for form in sets["crops"]:
        for s, name in enumerate(NAMES):
            cat = maps[f"cat/{s}"]
            keep = on_disc(cat.shape[2])
            for whiten in WHITENINGS:
                if whiten and whiten >= cat.shape[-1]:
                    continue
                S = cell_scores(maps[f"{form}/{s}"], cat, transform(cat, keep, whiten), keep)
                side = int(round(np.sqrt(cat.shape[2])))
                rank = (S > S[np.arange(len(S)), sets["true"]][:, None]).sum(1) + 1
                rows.append({"form": form, "method": f"{name} ({side}x{side}x{cat.shape[-1]}), "
                                                     f"{'raw' if whiten is None else f'PCA {whiten}'}",
                             **scores(S, sets["true"]), "misses": f"{int((rank > 1).sum())} not first"})
    text = format_table(rows, [("form", "queries", "<10"), ("method", "cells", "<32"), ("R@1", "R@1", "6.3f"),
                               ("R@5", "R@5", "6.3f"), ("AUC", "ROC AUC", "8.3f"), ("TPR@1%", "TPR@1%FPR", "10.3f"),
                               ("misses", "", "<")])
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

"""Ring pooling: the last feature map pooled over concentric rings as well as whole, rotation pooled.

    .venv/bin/python benchmarks/rings.py [--image-size 224] [--limit 2000] [--train 1300] [--views 2]
        [--reuse] [--name rings]

A coin's layout is radial: legend and rim outside, portrait or value in the middle. Pooling the last
feature map over concentric rings keeps where on the coin a feature lies, and a ring does not change
when the coin turns, so the descriptor stays rotation invariant (R-MAC's regions, Tolias et al. 2016,
are squares and would not).

The grey, 16-angle rotation-pooled ImageNet Lite0 network of `--grey --rotations 16` computes, for each
image and angle, GeM over the whole map and over three rings of it (`--rings`, models/network.py: radius
below 0.45, 0.45 to 0.75 and beyond, in half-widths of the crop; each cell of the 7 x 7 map weighed by its
area in the ring), each unit length, then averages over the angles. Descriptors: the whole map (what
the models do now); the three rings joined; the whole map and the rings joined (`--rings`); the rings
summed (R-MAC's aggregation). Each raw and after the learned whitening
of `--loss whitening` (512-d, shrinkage 0.1, fitted on ``--train`` training coins x ``--views`` augmented
views), scored on the euro real pairs (benchmarks/common.py) as photographed and catalogue-like, and on
the training loop's held-out coins (val P@1). The descriptors are kept in out/benchmarks/ (``--reuse``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from common import (SCORE_COLUMNS, WORK, euro_crops, format_table, save_results, stored_descriptors,
                    study_arguments, study_embedder, training_views, unit)
from coinmatch.evaluation.protocol import load_query_images
from coinmatch.models.modelfile import ModelConfig, build_network
from coinmatch.models.network import RING_PARTS as PARTS
from coinmatch.models.network import CoinEmbedder, pool_weights, weighted_gem
from coinmatch.prepare import prepare_array
from coinmatch.training.whitening import learned_whitening

ROTATIONS = 16


class RingDescriptors(nn.Module):
    """N x (PARTS * C): the parts of ``--rings`` (each unit length per angle), averaged over the angles, not
    joined into one unit vector, so that the study can take them apart."""

    def __init__(self, net: CoinEmbedder):
        super().__init__()
        self.net = net
        self.out_dim = PARTS * net.stage_widths()[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.net.feature_maps(self.net.views(x))[-1]  # (angles * N) x C x h x w
        w = pool_weights(m.shape[-2], m.shape[-1])
        return weighted_gem(m, self.net.pool.p, w).view(self.net.rotations, x.shape[0], -1).mean(dim=0)


def ring_embedder(size: int):
    """``embed(crops, what)``: the crops' ring descriptors at ``size`` px through ONNX Runtime, timed aloud."""
    config = ModelConfig(backbone="efficientnet_lite0", grey=True, rotations=ROTATIONS, image_size=size)
    embedder = study_embedder(RingDescriptors(build_network(config).eval()).eval(), config, f"rings-study-{size}")

    def embed(crops, what):
        t = time.perf_counter()
        v = embedder.embed(crops, progress=True)
        print(f"{what}: {len(crops)} images in {time.perf_counter() - t:.0f} s", flush=True)
        return v

    return embed


def extract(size: int, limit: int, n_train: int, n_views: int, embed_size: int | None = None) -> dict[str, np.ndarray]:
    """Every set's ring descriptors (see ``descriptors``). The training views are made at ``size`` px and
    embedded at ``embed_size`` (default: the same), so that two sizes see the very same views."""
    embed = ring_embedder(embed_size or size)
    cat_ids, cat_crops, queries = euro_crops()
    out = {"cat_ids": cat_ids, "cat": embed(cat_crops, "euro catalogue"),
           "q_ids": np.array([q.true_id for q in queries])}
    for form in ("photo", "catalogue-like"):
        images = load_query_images(queries, form, seed=0)
        out["q:" + form] = embed([prepare_array(im, q.name).crop for im, q in zip(images, queries)], form)
    for key, crops in training_views(size, limit, n_train, n_views).items():
        out[key] = embed(crops, key)
    return out


# each descriptor the study compares, made from the stored blocks (whole, ring 1, ring 2, ...) of one image
VARIANTS = {
    "whole map (now)": lambda b: b[0],
    "rings joined": lambda b: np.concatenate(b[1:], axis=1),
    "whole + rings (--rings)": lambda b: np.concatenate(b, axis=1),
    "rings summed": lambda b: sum(unit(x) for x in b[1:]),
}


def variant(d: dict[str, np.ndarray], make) -> dict[str, np.ndarray]:
    """One variant's unit descriptors of every set (``make``: one of VARIANTS)."""
    return {k: unit(make(np.split(a, PARTS, axis=1))) for k, a in d.items() if a.dtype.kind == "f"}


def descriptors(d: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Each variant's descriptors of every set."""
    return {name: variant(d, make) for name, make in VARIANTS.items()}


def whitened(v: dict[str, np.ndarray], n_views: int) -> dict[str, np.ndarray]:
    """Every set whitened as `--loss whitening` does (512-d, shrinkage 0.1), fitted on the training coins
    (x) against their first ``n_views`` augmented views (y, view-major)."""
    x = v["x"]
    p, m = learned_whitening(np.tile(x, (n_views, 1)), v["y"][:n_views * len(x)], 512, 0.1)
    return {k: unit((a - m) @ p.T) for k, a in v.items()}


def scores(w: dict[str, np.ndarray], d: dict[str, np.ndarray]) -> dict[str, float]:
    """Held-out augmented P@1 and the euro pairs' recall@1 in both forms (SCORE_COLUMNS)."""
    val = w["val_b"] @ w["val_a"].T
    row = {"val P@1": float(np.mean(val.argmax(1) == np.arange(len(val))))}
    for form in ("photo", "catalogue-like"):
        row[form] = float(np.mean(d["cat_ids"][(w["q:" + form] @ w["cat"].T).argmax(1)] == d["q_ids"]))
    return row


def study(d: dict[str, np.ndarray], n_views: int) -> list[dict]:
    rows = []
    for name, v in descriptors(d).items():
        for how, w in (("raw", v), ("whitened", whitened(v, n_views))):
            rows.append({"descriptor": name, "dim": v["x"].shape[1], "how": how, **scores(w, d)})
    return rows


def main() -> None:
    ap = study_arguments(__doc__.splitlines()[0], "rings")
    ap.add_argument("--views", type=int, default=2, help="augmented views of each training coin")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"rings-area-{args.image_size}-{args.limit}-{args.train}-{args.views}.npz"
    d, how = stored_descriptors(path, args.reuse,
                                lambda: extract(args.image_size, args.limit, args.train, args.views))
    print(f"Lite0, grey, {ROTATIONS} angles, {args.image_size} px: ring descriptors {how}", flush=True)
    rows = study(d, args.views)
    text = format_table(rows, [("descriptor", "descriptor", "<22"), ("dim", "dim", ">5"), ("how", "", "<9"),
                               *SCORE_COLUMNS])
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

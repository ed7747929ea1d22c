"""What limits the trained models: the linear map on top, or the frozen descriptor under it?

    .venv/bin/python benchmarks/frozen_descriptors.py [--backbones efficientnet_lite0 efficientnet_lite2]
        [--limit 2000] [--train 1300] [--views 1] [--image-size 224] [--head-epochs 10] [--reuse]
        [--name frozen-descriptors]

Each backbone (ImageNet weights, grey, rotation pooling over 16 angles, as `--grey --rotations 16`)
embeds once: the euro real-pairs protocol (benchmarks/common.py), the held-out validation coins of
`coinmatch train` (its split and its two fixed augmented views per coin), and ``--train`` training
coins (OCRE, first ``--limit`` rows, + euro singles) as they are and in ``--views`` augmented views.
On those cached descriptors, in seconds each:
- the raw descriptor (what `--invariant` measures in retrieval.py);
- the learned whitening of `--loss whitening` (training/whitening.py), at several shrinkages and sizes;
- linear heads started from that whitening and trained further, through pytorch-metric-learning,
  with triplet (semi-hard mining), ArcFace (imprinted centres) and multi-similarity losses.
Reported: held-out augmented precision@1 (view b of each validation coin against view a of all) and
euro recall@1 (nearest catalogue image) as photographed and catalogue-like.
Whitening rows use every training coin and view unless they say otherwise.
The descriptors are kept in out/benchmarks/ (``--reuse`` reads them back instead of embedding again).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from common import (SCORE_COLUMNS, WORK, euro_crops, format_table, save_results, stored_descriptors,
                    study_arguments, training_views, unit)
from coinmatch.evaluation.protocol import load_query_images
from coinmatch.models.modelfile import ModelConfig, build_network
from coinmatch.prepare import prepare_array
from coinmatch.training.losses import build_loss, imprint
from coinmatch.training.whitening import descriptor_embedder, learned_whitening

FORMS = ("photo", "catalogue-like")


def extract(backbone: str, size: int, limit: int, n_train: int, n_views: int) -> dict[str, np.ndarray]:
    config = ModelConfig(backbone=backbone, grey=True, rotations=16, image_size=size)
    net = build_network(config).eval()
    embedder = descriptor_embedder(net, config, "cpu")
    cat_ids, cat_crops, queries = euro_crops()
    out = {"cat": embedder.embed(cat_crops, progress=True), "cat_ids": cat_ids,
           "q_ids": np.array([q.true_id for q in queries])}
    for form in FORMS:
        images = load_query_images(queries, form, seed=0)
        out[form] = embedder.embed([prepare_array(im, q.name).crop for im, q in zip(images, queries)])
    sets = training_views(size, limit, n_train, n_views)
    out["val_a"], out["val_b"] = embedder.embed(sets["val_a"]), embedder.embed(sets["val_b"])
    out["x"] = embedder.embed(sets["x"], progress=True)
    out["y"] = embedder.embed(sets["y"], progress=True).reshape(n_views, len(sets["x"]), -1)
    return out


def scores(d: dict, transform) -> dict:
    """Held-out augmented P@1 and euro recall@1 (both forms) after ``transform`` (array -> unit rows)."""
    sims = transform(d["val_b"]) @ transform(d["val_a"]).T
    row = {"val P@1": float(np.mean(sims.argmax(1) == np.arange(len(sims))))}
    cat = transform(d["cat"])
    for form in FORMS:
        best = (transform(d[form]) @ cat.T).argmax(1)
        row[form] = float(np.mean(d["cat_ids"][best] == d["q_ids"]))
    return row


def linear(weight: np.ndarray, bias: np.ndarray):
    return lambda v: unit(v @ weight.T + bias)


def whitening(d: dict, dim: int, shrinkage: float):
    n_views, dimension = d["y"].shape[0], d["x"].shape[1]
    p, m = learned_whitening(np.tile(d["x"], (n_views, 1)), d["y"].reshape(-1, dimension), dim, shrinkage)
    return p, -(p @ m)


def train_head(d: dict, weight: np.ndarray, bias: np.ndarray, loss: str, lr: float, epochs: int,
               seed: int = 0) -> list[tuple[int, float, np.ndarray, np.ndarray]]:
    """A linear head (started from ``weight``, ``bias``) trained on the cached descriptors: every coin is a
    class with 1 + V samples (as it is, and its views). Returns (epoch, loss, weight, bias) per epoch."""
    from pytorch_metric_learning import losses, miners

    torch.manual_seed(seed)
    samples = torch.from_numpy(np.concatenate([d["x"][:, None], d["y"].transpose(1, 0, 2)], 1)).float()
    n, per, dimension = samples.shape
    head = torch.nn.Linear(dimension, weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    if loss == "multi-similarity":  # not among the training loop's losses
        loss_fn, miner = losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner()
    else:  # the loop's own: triplet (semi-hard, margin 0.1) or ArcFace (margin 10, as in the runs)
        loss_fn, miner = build_loss(loss, n, weight.shape[0], "semihard", 0.1 if loss == "triplet" else 10)
        with torch.no_grad():  # ArcFace's centres imprinted, as the loop does (a no-op for triplet)
            imprint(loss_fn, head(samples.mean(1)))
    groups = [{"params": head.parameters(), "lr": lr}]
    if list(loss_fn.parameters()):
        groups.append({"params": loss_fn.parameters(), "lr": 1e-2})
    opt = torch.optim.Adam(groups)
    out = []
    for epoch in range(1, epochs + 1):
        total, steps = 0.0, 0
        for idx in torch.randperm(n).split(64):
            emb = F.normalize(head(samples[idx].reshape(-1, dimension)), dim=1)
            labels = idx.repeat_interleave(per)
            value = loss_fn(emb, labels, miner(emb, labels)) if miner else loss_fn(emb, labels)
            opt.zero_grad()
            value.backward()
            opt.step()
            total, steps = total + value.item(), steps + 1
        out.append((epoch, total / steps, head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()))
    return out


def study(d: dict, label: str, head_epochs: int) -> list[dict]:
    rows = [{"backbone": label, "method": "raw descriptor (no training)", **scores(d, unit)}]
    n, n_views = len(d["x"]), len(d["y"])
    for coins in sorted({n // 4, n // 2, n}):  # how the whitening grows with its training pairs
        for views in sorted({1, n_views}):
            part = {**d, "x": d["x"][:coins], "y": d["y"][:views, :coins]}
            rows.append({"backbone": label, "method": f"whitening 512-d, shrinkage 0.1, {coins} coins x {views} "
                         f"view{'s' if views > 1 else ''}", **scores(part, linear(*whitening(part, 512, 0.1)))})
    for shrinkage in (0.02, 0.05, 0.2, 0.4):
        rows.append({"backbone": label, "method": f"whitening 512-d, shrinkage {shrinkage}",
                     **scores(d, linear(*whitening(d, 512, shrinkage)))})
    for dim in (128, 256, 1024):
        rows.append({"backbone": label, "method": f"whitening {dim}-d, shrinkage 0.1",
                     **scores(d, linear(*whitening(d, dim, 0.1)))})
    start = whitening(d, 512, 0.1)
    for loss in ("triplet", "arcface", "multi-similarity"):
        for lr in (1e-4, 1e-3):
            for epoch, value, w, b in train_head(d, *start, loss, lr, head_epochs):
                if epoch in (1, 3, head_epochs):
                    rows.append({"backbone": label, "method": f"whitening + {loss} head, lr {lr:g}, epoch {epoch} "
                                 f"(loss {value:.3f})", **scores(d, linear(w, b))})
    return rows


def main() -> None:
    ap = study_arguments(__doc__.splitlines()[0], "frozen-descriptors")
    ap.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "efficientnet_lite2"])
    ap.add_argument("--views", type=int, default=1, help="augmented views per training coin")
    ap.add_argument("--head-epochs", type=int, default=10)
    args = ap.parse_args()
    rows = []
    for backbone in args.backbones:
        path = WORK / f"descriptors-{backbone}-{args.image_size}-{args.limit}-{args.train}-{args.views}.npz"
        d, how = stored_descriptors(path, args.reuse, lambda: extract(backbone, args.image_size, args.limit,
                                                                       args.train, args.views))
        print(f"{backbone}: descriptors of {len(d['x'])} training coins (as they are + {len(d['y'])} augmented "
              f"view(s)), {len(d['val_a'])} validation coins and the euro protocol, {how}", flush=True)
        rows += study(d, backbone, args.head_epochs)
    text = format_table(rows, [("backbone", "backbone", "<18"), ("method", "method", "<70"), *SCORE_COLUMNS])
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

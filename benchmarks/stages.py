"""Descriptors pooled from intermediate stages of the backbone, alone and concatenated, raw and whitened.

    .venv/bin/python benchmarks/stages.py [--image-size 224] [--limit 2000] [--train 1300] [--reuse]
        [--name stages]

EfficientNet-Lite0 with ImageNet weights, grey, 16 angles (as `--grey --rotations 16`): each of its
last four blocks and its final 1x1 head convolution gives a GeM-pooled, rotation-averaged, unit
descriptor, all from one pass per angle (an ONNX export of the network below, checked against torch).
The sets are those of benchmarks/frozen_descriptors.py: the euro real-pairs protocol, the held-out
validation coins of `coinmatch train` in its two fixed augmented views, and ``--train`` training coins
with one augmented view each. Then, in seconds: each stage alone, and concatenations of stages (each
stage unit length), raw and after the learned whitening of `--loss whitening` (shrinkage 0.1).
Reported: held-out augmented precision@1 and euro recall@1 as photographed and catalogue-like, and
the latter two again after a second, unsupervised PCA whitening fitted on the euro catalogue's own
vectors ("+cw"; shrinkage 0.1), which a catalogue could fit when it is built.
The descriptors are kept in out/benchmarks/ (``--reuse`` reads them back).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from common import (WORK, euro_crops, format_table, save_results, stored_descriptors, study_arguments,
                    study_embedder, training_views, unit)
from coinmatch.evaluation.protocol import load_query_images
from coinmatch.models.modelfile import ModelConfig, build_network
from coinmatch.prepare import prepare_array
from coinmatch.training.whitening import learned_whitening

STAGES = ("block 3", "block 4", "block 5", "block 6", "head")  # Lite0: 80, 112, 192, 320, 1280 channels
COMBINATIONS = (("block 6", "head"), ("block 5", "block 6", "head"), ("block 4", "block 5", "block 6", "head"),
                ("block 4", "block 5", "block 6"), STAGES)


class StageDescriptors(torch.nn.Module):
    """The CoinEmbedder's grey, rotated views, pooled at each of its last five stages: N x sum(channels)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.net = build_network(config).eval()
        self.channels = self.net.stage_widths()
        self.out_dim = sum(self.channels)  # what the Embedder reads as the vectors' width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.net.stage_descriptors(x), 1)


def stage_embedder(size: int):
    """A function crops -> N x sum(channels) through ONNX Runtime (exported to out/benchmarks/ and checked
    against torch by the package's Embedder), and the channel count of each stage."""
    config = ModelConfig(backbone="efficientnet_lite0", grey=True, rotations=16, image_size=size, stages=len(STAGES))
    module = StageDescriptors(config).eval()
    embedder = study_embedder(module, config, f"stages-{size}")

    def embed(crops: list[np.ndarray], what: str) -> np.ndarray:
        t = time.perf_counter()
        out = embedder.embed(crops)
        print(f"{what}: {len(crops)} images in {time.perf_counter() - t:.0f} s", flush=True)
        return out

    return embed, module.channels


def extract(size: int, limit: int, n_train: int) -> dict[str, np.ndarray]:
    embed, channels = stage_embedder(size)
    cat_ids, cat_crops, queries = euro_crops()
    out = {"channels": np.array(channels), "cat_ids": cat_ids, "cat": embed(cat_crops, "euro catalogue"),
           "q_ids": np.array([q.true_id for q in queries])}
    for form in ("photo", "catalogue-like"):
        images = load_query_images(queries, form, seed=0)
        out[form] = embed([prepare_array(im, q.name).crop for im, q in zip(images, queries)], form)
    for key, crops in training_views(size, limit, n_train).items():
        out[key] = embed(crops, key)
    return out


def score(d: dict, stages: tuple[str, ...], dim: int | None) -> dict:
    """``stages`` concatenated (each unit length); whitened to ``dim`` (at most the width), or raw when None."""
    bounds = np.concatenate([[0], np.cumsum(d["channels"])])
    cols = np.concatenate([np.arange(bounds[STAGES.index(s)], bounds[STAGES.index(s) + 1]) for s in stages])
    v = {k: unit(d[k][:, cols]) for k in ("cat", "photo", "catalogue-like", "val_a", "val_b", "x", "y")}
    if dim is None:
        transform, how = (lambda a: a), "raw"
    else:
        dim = min(dim, len(cols))
        p, m = learned_whitening(v["x"], v["y"], dim, 0.1)
        transform, how = (lambda a: unit((a - m) @ p.T)), f"whitened {dim}-d"
    t = {k: transform(a) for k, a in v.items()}
    val = t["val_b"] @ t["val_a"].T
    row = {"stages": " + ".join(stages), "descriptor": how, "width": len(cols),
           "val P@1": float(np.mean(val.argmax(1) == np.arange(len(val))))}
    adapted = catalogue_whitening(t["cat"])
    for form in ("photo", "catalogue-like"):
        row[form] = float(np.mean(d["cat_ids"][(t[form] @ t["cat"].T).argmax(1)] == d["q_ids"]))
        hits = d["cat_ids"][(adapted(t[form]) @ adapted(t["cat"]).T).argmax(1)] == d["q_ids"]
        row[form + " + catalogue whitening"] = float(np.mean(hits))
    return row


def catalogue_whitening(cat: np.ndarray, shrinkage: float = 0.1):
    """PCA whitening fitted on the catalogue's own vectors (no labels; eigenvalues shrunk towards their
    mean): directions in which all catalogue coins vary, such as their shared designs, count less."""
    mean = cat.mean(axis=0)
    w, v = np.linalg.eigh(np.cov((cat - mean).T))
    w = (1 - shrinkage) * w + shrinkage * w.mean()
    projection = v / np.sqrt(np.maximum(w, 1e-12))
    return lambda a: unit((a - mean) @ projection)


def main() -> None:
    args = study_arguments(__doc__.splitlines()[0], "stages").parse_args()
    path = WORK / f"stages-{args.image_size}-{args.limit}-{args.train}.npz"
    d, how = stored_descriptors(path, args.reuse, lambda: extract(args.image_size, args.limit, args.train))
    print(f"stage descriptors {how}", flush=True)
    rows = []
    for stages in [(s,) for s in STAGES] + list(COMBINATIONS):
        for dim in (None, 512) if len(stages) == 1 else (None, 512, 1024):
            rows.append(score(d, stages, dim))
    text = format_table(rows, [("stages", "stages", "<44"), ("descriptor", "descriptor", "<15"),
                               ("width", "width", "6d"), ("val P@1", "val P@1", "8.3f"),
                               ("photo", "photo R@1", "10.3f"), ("catalogue-like", "cat-like R@1", "13.3f"),
                               ("photo + catalogue whitening", "photo +cw", "10.3f"),
                               ("catalogue-like + catalogue whitening", "cat-like +cw", "13.3f")])
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

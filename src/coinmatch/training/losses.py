"""Losses and miners, all from pytorch-metric-learning, composed rather than written by hand.

* triplet: TripletMarginLoss on cosine similarity with a TripletMarginMiner (semi-hard or hard);
  when a type column exists, triplets whose negative is a coin of the anchor's own type come first
  ("a similar coin of a different class", as the research mines).
* arcface / subcenter-arcface: additive angular margin; their class centres are parameters that
  get their own learning rate, and start imprinted: at the embedding of their own coin (Qi et al.,
  "Low-shot learning with imprinted weights", 2018), not at random, so the first steps do not pull
  the pretrained features towards thousands of random centres.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances, losses, miners
from pytorch_metric_learning.miners import BaseMiner

LOSSES = ("triplet", "arcface", "subcenter-arcface")


class SameTypeFirstMiner(BaseMiner):
    """Keeps the inner miner's triplets whose negative shares the anchor's type, topped up with
    the hardest others so the batch keeps at least ``min_fraction`` of the mined triplets."""

    def __init__(self, inner: BaseMiner, min_fraction: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.min_fraction = min_fraction
        self.types: torch.Tensor | None = None  # set per batch, aligned with the labels

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        a, p, n = self.inner(embeddings, labels, ref_emb, ref_labels)
        if self.types is None or len(a) == 0:
            return a, p, n
        types = self.types.to(labels.device)
        same = (types[a] == types[n]) & (types[a] >= 0)
        keep = same.clone()
        want = int(self.min_fraction * len(a))
        if keep.sum() < want:
            sim = torch.nn.functional.cosine_similarity(embeddings[a], ref_emb[n])
            others = torch.nonzero(~same).flatten()
            hardest = others[torch.argsort(sim[others], descending=True)[: want - int(keep.sum())]]
            keep[hardest] = True
        return a[keep], p[keep], n[keep]


def build_loss(name: str, num_classes: int, dim: int, mining: str = "semihard", margin: float | None = None,
               with_types: bool = False):
    """(loss, miner or None); the loss may have parameters of its own (class centres)."""
    cosine = distances.CosineSimilarity()
    if name == "triplet":
        m = 0.2 if margin is None else margin
        loss = losses.TripletMarginLoss(margin=m, distance=cosine)
        miner: BaseMiner = miners.TripletMarginMiner(margin=m, type_of_triplets=mining, distance=cosine)
        if with_types:
            miner = SameTypeFirstMiner(miner)
        return loss, miner
    if name == "arcface":
        return losses.ArcFaceLoss(num_classes=num_classes, embedding_size=dim, margin=28.6 if margin is None else margin, scale=30), None
    if name == "subcenter-arcface":
        return losses.SubCenterArcFaceLoss(num_classes=num_classes, embedding_size=dim, margin=28.6 if margin is None else margin, scale=30,
                                           sub_centers=3), None
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def imprint(loss_fn: torch.nn.Module, class_embeddings: torch.Tensor, noise: float = 0.05, seed: int = 0) -> bool:
    """Set the class centres of an ArcFace-style loss to each class's own embedding (row c: class c).

    Sub-center ArcFace gets the same start for all sub-centres of a class, jittered by a random vector of
    length about ``noise`` so that they can part. Returns False for a loss without class centres (triplet)."""
    w = getattr(loss_fn, "W", None)
    if w is None:
        return False
    k = getattr(loss_fn, "sub_centers", 1)
    n = class_embeddings.shape[0]
    if w.shape != (class_embeddings.shape[1], n * k):
        raise ValueError(f"{n} class embeddings of size {class_embeddings.shape[1]} do not fit centres {tuple(w.shape)}")
    centres = torch.nn.functional.normalize(class_embeddings.float(), dim=1).repeat_interleave(k, dim=0)
    if k > 1:
        g = torch.Generator().manual_seed(seed)
        centres = centres + noise / centres.shape[1] ** 0.5 * torch.randn(centres.shape, generator=g)
    with torch.no_grad():
        w.copy_(torch.nn.functional.normalize(centres, dim=1).t().to(w.device, w.dtype))
    return True

"""Per-epoch validation on coins held out of training.

Two augmented views of every held-out coin (fixed draws, the same every epoch): the mean cosine
similarity of the augmented positive pairs and of unmatched pairs, how well the two are separated
(ROC AUC), and precision@1 and MAP@R from pytorch-metric-learning's AccuracyCalculator.
With real pairs (``--val-pairs``): recall@1 on real photographs of the same coins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.metrics import roc_auc_score

from coinmatch.training.augment import augment
from coinmatch.training.cache import TrainingCache


@dataclass
class RealPairs:
    """Real photographs: ``references[i]`` and every ``queries[j]`` with ``query_labels[j] == i``."""

    references: np.ndarray  # N x S x S x 3 uint8
    queries: np.ndarray
    query_labels: np.ndarray


def fixed_views(cache: TrainingCache, out_size: int, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = np.stack([augment(im, rng, out_size) for im in cache.images])
    b = np.stack([augment(im, rng, out_size) for im in cache.images])
    return a, b


@torch.no_grad()
def embed_arrays(net: torch.nn.Module, images: np.ndarray, device: str, batch: int = 64) -> np.ndarray:
    net.eval()
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s:s + batch].transpose(0, 3, 1, 2).astype(np.float32) / 255.0).to(device)
        out.append(net(x).float().cpu().numpy())
    return np.concatenate(out)


def onnx_embed(net: torch.nn.Module, config, path):
    """Arrays -> vectors through ONNX Runtime, for the network as it is now.

    The network is exported to ``path`` afresh (checked against torch within 1e-4) and run there: 4-5x
    faster than torch on CPU, which matters for rotation-pooled networks (16 backbone passes per image).
    If the export fails, the Embedder says so and embeds in torch.
    """
    from coinmatch.models.modelfile import LoadedModel
    from coinmatch.models.runtime import Embedder

    embedder = Embedder(LoadedModel(net.eval(), config, "validation", "training"), device="cpu", onnx_file=path)
    return lambda images: embedder.embed(list(images))


def separation(a: np.ndarray, b: np.ndarray, rng_seed: int = 0) -> dict:
    """Positive pairs (a_i, b_i) against unmatched pairs (a_i, b_j), j != i."""
    pos = np.sum(a * b, axis=1)
    rng = np.random.default_rng(rng_seed)
    n = len(a)
    shift = rng.integers(1, n, n) if n > 1 else np.zeros(n, int)
    neg = np.sum(a * b[(np.arange(n) + shift) % n], axis=1)
    y = np.r_[np.ones(n), np.zeros(n)]
    return {"pos_sim": float(pos.mean()), "neg_sim": float(neg.mean()),
            "roc_auc": float(roc_auc_score(y, np.r_[pos, neg])) if n > 1 else float("nan"),
            "pos": pos, "neg": neg}


def validate(net, views: tuple[np.ndarray, np.ndarray], device: str, real: RealPairs | None = None,
             embed=None) -> dict:
    """Validation figures; ``embed`` (arrays -> vectors) replaces the torch pass, e.g. by ONNX Runtime."""
    embed = embed or (lambda images: embed_arrays(net, images, device))
    real_vectors = None if real is None else (embed(real.references), embed(real.queries), real.query_labels)
    return score_vectors(embed(views[0]), embed(views[1]), real_vectors)


def score_vectors(a: np.ndarray, b: np.ndarray,
                  real: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict:
    """The validation figures of embeddings: ``a`` and ``b`` the two views of each held-out coin (row i of
    each, one coin); ``real``: (references, queries, each query's reference index) of real photographs."""
    sep = separation(a, b)
    labels = np.arange(len(a))
    # exact neighbours by cosine in torch (its default, faiss, is a catalogue's need, not training's)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k=None,
                              knn_func=CustomKNN(CosineSimilarity()))
    acc = calc.get_accuracy(torch.from_numpy(b), torch.from_numpy(labels), torch.from_numpy(a),
                            torch.from_numpy(labels))
    out = {"val_pos_sim": sep["pos_sim"], "val_neg_sim": sep["neg_sim"], "val_roc_auc": sep["roc_auc"],
           "val_precision_at_1": float(acc["precision_at_1"]), "val_map_at_r": float(acc["mean_average_precision_at_r"]),
           "_pos": sep["pos"], "_neg": sep["neg"]}
    if real is not None:
        ref, q, query_labels = real
        out["real_recall_at_1"] = float(np.mean(np.argmax(q @ ref.T, axis=1) == query_labels))
    return out

"""Learned whitening from augmentation positives: training in closed form, no back-propagation.

The descriptor of the ImageNet backbone (optionally grey and rotation-pooled) is computed for every
training coin as it is and for one augmented view of it (another light, tilt, blur, print...).
The differences within those positive pairs say which directions of the descriptor change when only
the photograph changes; whitening by their covariance (shrunk towards the identity) damps those
directions, and a PCA of the whitened descriptors keeps the ``dim`` strongest that remain. This is
the supervised "learned whitening" of Radenović, Tolias & Chum (Fine-tuning CNN image retrieval with
no human annotation, TPAMI 2018), with augmentation standing in for their matched pairs.

The result is a model file like any other: the network with a linear layer (weights and mean) after
pooling; no backbone weight changes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import torch

from coinmatch.models.modelfile import LoadedModel, ModelConfig, build_network, fingerprint_of, save_model
from coinmatch.models.network import CoinEmbedder
from coinmatch.models.runtime import Embedder
from coinmatch.training.augment import augment

log = logging.getLogger(__name__)


def pair_whitening(x: np.ndarray, y: np.ndarray, shrinkage: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first step of :func:`learned_whitening` from positive pairs (x_i, y_i): C_S^{-1/2} (D x D, C_S the
    covariance of the pair differences shrunk towards a scaled identity by ``shrinkage``: fewer pairs than
    dimensions leave it singular), the mean m of all descriptors, and every descriptor whitened, C_S^{-1/2} (v - m)
    (x then y, float64)."""
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError("x and y must be N x D arrays of the same shape")
    if not 0.0 < shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in (0, 1], not {shrinkage}")
    d = x.shape[1]
    x, y = x.astype(np.float64), y.astype(np.float64)
    both = np.concatenate([x, y])
    mean = both.mean(axis=0)
    diff = x - y
    cs = diff.T @ diff / len(diff)
    cs = (1 - shrinkage) * cs + shrinkage * np.trace(cs) / d * np.eye(d)
    w, v = np.linalg.eigh(cs)
    p1 = (v / np.sqrt(np.maximum(w, 1e-12))) @ v.T  # C_S^{-1/2}
    return p1, mean, (both - mean) @ p1.T


def leading_projection(cov: np.ndarray, first: np.ndarray, dim: int) -> np.ndarray:
    """``first`` followed by the ``dim`` strongest directions of ``cov`` (a covariance in the space ``first``
    maps to): V^T first, V the leading eigenvectors (dim x D, float64)."""
    w, v = np.linalg.eigh(cov)
    return v[:, np.argsort(-w)[:dim]].T @ first


def learned_whitening(x: np.ndarray, y: np.ndarray, dim: int, shrinkage: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Projection P (dim x D) and mean m from positive pairs (x_i, y_i): whitened = P (v - m).

    P = V^T C_S^{-1/2} (:func:`pair_whitening`), V the leading eigenvectors of the covariance of all whitened
    descriptors (:func:`leading_projection`).
    """
    if x.ndim == 2 and not 0 < dim <= x.shape[1]:
        raise ValueError(f"whitening dimension must be between 1 and {x.shape[1]}, not {dim}")
    p1, mean, white = pair_whitening(x, y, shrinkage)
    return leading_projection(white.T @ white / len(white), p1, dim).astype(np.float32), mean.astype(np.float32)


def set_whitening(net: CoinEmbedder, projection: np.ndarray, mean: np.ndarray) -> None:
    layer = net.whiten
    if not isinstance(layer, torch.nn.Linear) or tuple(layer.weight.shape) != projection.shape:
        raise ValueError("the network has no whitening layer of this shape")
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(projection))
        layer.bias.copy_(torch.from_numpy(-(projection @ mean)))


def descriptor_embedder(net: CoinEmbedder, config: ModelConfig, device: str) -> Embedder:
    """An embedder of the network as it is now: ONNX Runtime on CPU (4-5x faster than torch), torch on CUDA."""
    return Embedder(LoadedModel(net.eval(), config, fingerprint_of(net, config), "training"), device=device)


def positive_pairs(cache, size: int, seed: int, views: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each cached coin as it is (resized), and ``views`` augmented views of every coin, view-major (view 1 of
    each coin, then view 2...): pair k is coin k mod N with its view k // N."""
    if views < 1:
        raise ValueError(f"views per coin must be at least 1, not {views}")
    rng = np.random.default_rng(seed)
    return cache.plain(size), [augment(im, rng, size) for _ in range(views) for im in cache.images]


def fit_whitening(cfg, cache, val_views, real, progress: bool = True) -> dict:
    """Fit the whitening on ``cache`` (a TrainingCache), validate, write the model file. Returns the validation
    rows of the network it was fitted on (epoch 0, "before") and of the whitened one (epoch 1), and more.

    The held-out views and real pairs are embedded once, by the network before whitening: the whitened
    network's output is that descriptor through one linear map, unit length, so both rows come from one pass
    (checked against the saved network on a few held-out views)."""
    from coinmatch.training.validate import embed_arrays, score_vectors

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base_config = cfg.model_config(dim=None)
    net = build_network(base_config, weights=cfg.weights)
    t = time.perf_counter()
    plain, views = positive_pairs(cache, cfg.image_size, cfg.seed, cfg.whitening_views)
    embedder = descriptor_embedder(net, base_config, device)
    coins = embedder.embed(plain, progress=progress)
    x = np.tile(coins, (cfg.whitening_views, 1))
    y = embedder.embed(views, progress=progress)
    extract_seconds = time.perf_counter() - t
    t_val = time.perf_counter()
    held_out = [embedder.embed(list(v), progress=progress) for v in val_views]
    real_sets = [] if real is None else [embedder.embed(list(real.references)), embedder.embed(list(real.queries))]
    val_seconds = time.perf_counter() - t_val
    del embedder  # its ONNX Runtime memory
    projection, mean = learned_whitening(x, y, cfg.dim, cfg.shrinkage)

    def whitened(v: np.ndarray) -> np.ndarray:
        w = (v - mean) @ projection.T
        return (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float32)

    def scores(f) -> dict:
        return score_vectors(f(held_out[0]), f(held_out[1]),
                             None if real is None else (f(real_sets[0]), f(real_sets[1]), real.query_labels))

    before, val = scores(lambda v: v), scores(whitened)
    config = replace(base_config, whiten_dim=cfg.dim, trained=True)
    white = build_network(config, weights="random")  # the backbone comes from ``net``: loaded once
    white.load_state_dict(net.state_dict(), strict=False)
    set_whitening(white, projection, mean)
    check = embed_arrays(white.eval(), val_views[0][:4], str(next(white.parameters()).device))  # where it was built
    if not np.allclose(check, whitened(held_out[0][:4]), atol=2e-3):  # the figures must be the saved model's
        raise RuntimeError("the whitened network disagrees with the whitening it was given")
    seconds = round(time.perf_counter() - t, 1)
    rows = [{"epoch": e, "loss": None, "seconds": seconds if e else round(val_seconds, 1),
             **{k: v for k, v in r.items() if not k.startswith("_")}} for e, r in ((0, before), (1, val))]
    row = rows[1]
    config.info = {"loss": "whitening", "manifests": cfg.manifests, "pairs": len(x), "views": cfg.whitening_views,
                   "shrinkage": cfg.shrinkage,
                   "validation": {k: v for k, v in row.items() if k.startswith(("val", "real"))},
                   "validation_before": {k: v for k, v in rows[0].items() if k.startswith(("val", "real"))},
                   "seed": cfg.seed}
    save_model(white.eval(), config, cfg.out)
    log.info("whitening fitted on %d positive pairs in %.0f s", len(x), extract_seconds)
    return {"rows": rows, "val": val, "extract_seconds": extract_seconds,
            "images": len(plain) + len(views)}

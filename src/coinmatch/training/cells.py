"""The cell descriptors' whitening, fitted in closed form on training photos (see models/network.py's ``cells``).

Every training photo's cell map is read as the coin lies (one angle), each cell on the coin's disc taken as a unit
vector. Two fits:

- ``pca``: the cells' mean and principal axes, each over its spread, give the whitening to ``cells`` dimensions
  (unsupervised: no few strong channels outweigh the rest in a cell's cosine);
- ``learned`` (the default): each photo is paired with a view of it that a second photograph or a catalogue scan
  would give, with the coin held where it lies (light, toning, exposure, grey or print, blur, low resolution,
  noise, JPEG; turned by at most half the step between search's angles, as search's best angle leaves it), so each
  cell has a positive partner at its own place, and the whitening is learned from those pairs as the vector's is
  (:func:`coinmatch.training.whitening.learned_whitening`, Radenović et al.): what varies between the two
  photos of a cell is damped, what tells cells apart kept.
"""

from __future__ import annotations

import numpy as np
import torch

from coinmatch.models.network import CoinEmbedder
from coinmatch.models.runtime import to_batch
from coinmatch.training.augment import AugmentConfig, augment

FITS = ("learned", "pca")


def cell_view_config(rotations: int) -> AugmentConfig:
    """A second photograph of the coin held where it lies: every photometric change, a turn of at most half the
    step between ``rotations`` angles, and next to no tilt, scale or shift (so that a cell keeps its place)."""
    return AugmentConfig(tilt=0.01, rotation=180.0 / max(2, rotations), scale=(0.98, 1.02), shift=0.01)


def cell_vectors(net: CoinEmbedder, crops: list[np.ndarray], device: str = "cpu", batch: int = 64) -> np.ndarray:
    """All disc cells of the crops (uint8 H x W x 3 at the model's size), as the coins lie: (N K) x C unit rows."""
    out = []
    net = net.to(device).eval()
    with torch.no_grad():
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(to_batch(crops[i:i + batch], crops[i].shape[0])).to(device)
            m = net.feature_maps(net.views(x, rotations=1), net.cell_map)[0]
            out.append(net.cell_vectors(m).flatten(0, 1).float().cpu().numpy())
    return np.concatenate(out)


def cell_whitening(cells: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (C) and whitening projection (C x dim) of unit cell vectors: their leading principal axes, each over
    its standard deviation."""
    if dim > cells.shape[1]:
        raise ValueError(f"cell descriptors of {dim} dimensions from cells of {cells.shape[1]}: at most that many")
    x = cells.astype(np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    scale = s[:dim] / np.sqrt(len(x))
    return mean.astype(np.float32), (vt[:dim].T / np.maximum(scale, 1e-6)).astype(np.float32)


def fit_cells(net: CoinEmbedder, crops: list[np.ndarray], device: str = "cpu", fit: str = "learned",
              sources: list[np.ndarray] | None = None, seed: int = 0, shrinkage: float = 0.1) -> int:
    """Fit ``net``'s cell whitening on the crops (at the model's size) and set it in place; returns the number of
    cells it was fitted on. ``learned`` pairs each crop with a view of ``sources`` (the same coins, as the training
    cache holds them: a little larger, so a turn brings no corners in; by default the crops), drawn with ``seed``."""
    from coinmatch.training.whitening import learned_whitening

    if not net.cells:
        raise ValueError("this network has no cell descriptors to fit (cells=0)")
    if fit not in FITS:
        raise ValueError(f"unknown cell fit {fit!r}; choose one of {', '.join(FITS)}")
    if net.cells > len(net.cell_mean):  # before any photo is read: the same refusal as cell_whitening's
        raise ValueError(f"cell descriptors of {net.cells} dimensions from cells of {len(net.cell_mean)}: "
                         f"at most that many")
    cells = cell_vectors(net, crops, device)
    if fit == "pca":
        mean, projection = cell_whitening(cells, net.cells)
    else:
        rng = np.random.default_rng(seed)
        size, cfg = crops[0].shape[0], cell_view_config(net.rotations)
        views = [augment(im, rng, size, cfg) for im in (crops if sources is None else sources)]
        p, mean = learned_whitening(cells, cell_vectors(net, views, device), net.cells, shrinkage)
        projection = p.T
    with torch.no_grad():
        net.cell_mean.copy_(torch.from_numpy(mean))
        net.cell_projection.copy_(torch.from_numpy(projection))
    return len(cells)

"""The cell descriptors' whitening, fitted in closed form on training photos (see models/network.py's ``cells``).

Every training photo's cell map is read once, as the coin lies (one angle), and each cell on the coin's disc taken
as a unit vector; their mean and principal axes give the centring and the whitening to ``cells`` dimensions
(each axis over its spread, so that no few strong channels outweigh the rest in a cell's cosine). No labels: the
cells of two photos of one coin are not known to correspond (the augmentations move them), so this is PCA
whitening, the unsupervised kind, fitted on photos of the catalogue's kind rather than on the catalogue itself.
"""

from __future__ import annotations

import numpy as np
import torch

from coinmatch.models.network import CoinEmbedder


def cell_vectors(net: CoinEmbedder, crops: list[np.ndarray], device: str = "cpu", batch: int = 64) -> np.ndarray:
    """All disc cells of the crops (uint8 H x W x 3 at the model's size), as the coins lie: (N K) x C unit rows."""
    out = []
    net = net.to(device).eval()
    with torch.no_grad():
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(np.stack(crops[i:i + batch])).permute(0, 3, 1, 2).to(device).float() / 255.0
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


def fit_cells(net: CoinEmbedder, crops: list[np.ndarray], device: str = "cpu") -> int:
    """Fit ``net``'s cell whitening on the crops and set it in place; returns the number of cells it was fitted on."""
    if not net.cells:
        raise ValueError("this network has no cell descriptors to fit (cells=0)")
    cells = cell_vectors(net, crops, device)
    mean, projection = cell_whitening(cells, net.cells)
    with torch.no_grad():
        net.cell_mean.copy_(torch.from_numpy(mean))
        net.cell_projection.copy_(torch.from_numpy(projection))
    return len(cells)

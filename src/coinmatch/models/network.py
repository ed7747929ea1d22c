"""The embedding network: backbone -> pooling -> head -> L2-normalised vector.

The network takes RGB in [0, 1] (N x 3 x H x W) and normalises inside, so every runtime
(torch, ONNX Runtime) is fed the same plain pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coinmatch.models.backbones import create_backbone, get_spec


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling (Radenović et al.): p=1 is average pooling, p->inf max pooling."""
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class GeM(nn.Module):
    def __init__(self, p: float = 3.0, trainable: bool = True):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p)


class AvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class CoinEmbedder(nn.Module):
    """Backbone features pooled to a vector, projected to ``dim`` (or kept whole) and L2-normalised."""

    def __init__(self, backbone: str, dim: int | None = None, pooling: str = "gem", weights: str | None = None,
                 gem_p: float = 3.0):
        super().__init__()
        spec = get_spec(backbone)
        self.backbone = create_backbone(backbone, weights=weights)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.pool = GeM(gem_p) if pooling == "gem" else AvgPool()
        feat = spec.feature_dim
        if dim is None or dim == feat:
            self.head: nn.Module = nn.Identity()
        else:
            # orthogonal initialisation keeps angles between features as well as a projection can
            self.head = nn.Sequential(nn.Linear(feat, dim, bias=False))
            nn.init.orthogonal_(self.head[0].weight)
        self.out_dim = feat if isinstance(self.head, nn.Identity) else dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.pool(self.features(x))), dim=1)

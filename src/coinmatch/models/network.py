"""The embedding network: [grey] -> [rotated views] -> backbone -> pooling [by rings] -> [whitening] -> head ->
L2-normalised vector.

The network takes RGB in [0, 1] (N x 3 x H x W) and normalises inside, so every runtime
(torch, ONNX Runtime) is fed the same plain pixels.

The invariances live inside the network, so a model file carries them and a catalogue built with it
cannot be searched without them:

- ``grey``: the image is turned to luminance first; colour then cannot separate a photograph from
  a black-and-white catalogue scan of the same coin (nor one lamp's toning from another's).
- ``rotations`` = n > 1: the coin is seen at n angles (0, 360/n, ...) and the pooled descriptors are
  averaged, so the vector hardly changes when the coin lies at another angle (rotation pooling).
  It costs n passes of the backbone. The per-angle vectors come from the same pass
  (:meth:`CoinEmbedder.forward_with_angles`) for aligned re-scoring (:mod:`coinmatch.align`).
- ``rings``: the feature map is pooled over three concentric rings as well as whole (centre, middle and
  rim of the coin: the crop is square around it), each part unit length, and the parts joined. A coin's
  layout is radial (portrait or value in the middle, legend at the rim), so this keeps where on the coin a
  feature lies, and a ring does not change when the coin turns: the descriptor stays rotation invariant.
- ``whiten_dim``: a linear whitening (with its mean) after pooling, fitted in closed form by
  :mod:`coinmatch.training.whitening`.

Options measured and not adopted (pooling several stages, the disc only, a masked background, local contrast
normalisation, cell descriptors) are described in docs/research.md.
"""

from __future__ import annotations

import functools

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
    p = 1.0  # GeM's exponent of average pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


RING_EDGES = (0.45, 0.75)  # radii between the rings, in units of the crop's half width
RING_PARTS = 1 + len(RING_EDGES) + 1  # parts of a ring-pooled map: the whole map, then each ring


def radii(height: int, width: int) -> torch.Tensor:
    """H x W: each pixel centre's distance from the image's centre, in units of the half width (and height)."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
    return torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)


@functools.lru_cache(maxsize=32)
def pool_weights(height: int, width: int, supersample: int = 8) -> torch.Tensor:
    """Parts x H x W: the share of each cell's area in each pooled part: the whole map, then the rings (centre,
    middle, then the rim out into the corners). Shares, not 0/1 cells, so that every part has cells even on
    small maps. Computed once per map size (callers must not change it in place)."""
    r = radii(height * supersample, width * supersample)
    bounds = (0.0, *RING_EDGES, float("inf"))
    parts = [torch.ones_like(r)] + [((r >= lo) & (r < hi)).float() for lo, hi in zip(bounds[:-1], bounds[1:])]
    return F.avg_pool2d(torch.stack(parts)[None], supersample)[0]


def weighted_gem(x: torch.Tensor, p: torch.Tensor | float, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """N x C x H x W -> N x (K C): GeM (exponent p) over each of the K parts weighted by ``w`` (K x H x W, from
    :func:`pool_weights`), each part unit length."""
    w = w.to(x.device, x.dtype)  # constants to ONNX's tracer
    means = torch.einsum("nchw,khw->nkc", x.clamp(min=eps).pow(p), w / w.sum(dim=(1, 2), keepdim=True))
    return F.normalize(means.pow(1.0 / p), dim=2).flatten(1)


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY


def rotation_grids(n: int, height: int, width: int, device=None) -> torch.Tensor:
    """n x H x W x 2 sampling grids (grid_sample's [-1, 1] coordinates) rotating an image by 360 k / n degrees."""
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=device)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy], dim=-1)  # H x W x 2, (x, y)
    angles = torch.arange(n, dtype=torch.float32, device=device) * (2 * torch.pi / n)
    cos, sin = torch.cos(angles), torch.sin(angles)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # n x 2 x 2
    return torch.einsum("hwj,nij->nhwi", base, rot)


class CoinEmbedder(nn.Module):
    """Backbone features pooled to a vector, optionally whitened, projected to ``dim`` (or kept whole), L2-normalised."""

    def __init__(self, backbone: str, dim: int | None = None, pooling: str = "gem", weights: str | None = None,
                 gem_p: float = 3.0, grey: bool = False, rotations: int = 1, whiten_dim: int | None = None,
                 rings: bool = False):
        super().__init__()
        if rotations < 1:
            raise ValueError(f"rotations must be at least 1, not {rotations}")
        self.grey = bool(grey)
        self.rotations = int(rotations)
        self.rings = bool(rings)
        spec = get_spec(backbone)
        self.backbone = create_backbone(backbone, weights=weights)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.pool = GeM(gem_p) if pooling == "gem" else AvgPool()
        feat = spec.feature_dim * (RING_PARTS if self.rings else 1)
        self.whiten: nn.Module = nn.Identity()
        if whiten_dim:
            self.whiten = nn.Linear(feat, whiten_dim)  # its weights and bias are set by the closed-form fit
            feat = whiten_dim
        if dim is None or dim == feat:
            self.head: nn.Module = nn.Identity()
        else:
            # orthogonal initialisation keeps angles between features as well as a projection can
            self.head = nn.Sequential(nn.Linear(feat, dim, bias=False))
            nn.init.orthogonal_(self.head[0].weight)
        self.out_dim = feat if isinstance(self.head, nn.Identity) else dim

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map of images in [0, 1]."""
        return self.backbone.forward_features((x - self.mean) / self.std)

    def pooled(self, m: torch.Tensor) -> torch.Tensor:
        """A feature map pooled to a unit vector: whole, and by rings if so set."""
        if not self.rings:
            return F.normalize(self.pool(m), dim=1)
        return F.normalize(weighted_gem(m, self.pool.p, pool_weights(m.shape[-2], m.shape[-1])), dim=1)

    def views(self, x: torch.Tensor, rotations: int | None = None) -> torch.Tensor:
        """What the backbone sees: the batch (grey, if so set) at each of the ``rotations`` angles (or
        ``rotations``, when given), angle-major ((rotations * N) x 3 x H x W; the batch itself at one angle)."""
        if self.grey:
            x = (x[:, 0:1] * LUMA[0] + x[:, 1:2] * LUMA[1] + x[:, 2:3] * LUMA[2]).expand(-1, 3, -1, -1)
        n = self.rotations if rotations is None else rotations
        if n > 1:
            b = x.shape[0]
            grids = rotation_grids(n, x.shape[2], x.shape[3], x.device)
            x = torch.cat([x] + [F.grid_sample(x, grids[k:k + 1].expand(b, -1, -1, -1), mode="bilinear",
                                               padding_mode="reflection", align_corners=False) for k in range(1, n)])
        return x

    def angle_descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, L2-normalised descriptor at each angle, angle-major (rotations x N x D)."""
        return self.pooled(self.feature_map(self.views(x))).view(self.rotations, x.shape[0], -1)

    def over_angles(self, part: torch.Tensor) -> torch.Tensor:
        """Angle descriptors (rotations x N x D) averaged, L2-normalised (N x D)."""
        return part[0] if self.rotations == 1 else F.normalize(part.mean(dim=0), dim=1)

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """The descriptor before whitening and head."""
        return self.over_angles(self.angle_descriptors(x))

    def project(self, d: torch.Tensor) -> torch.Tensor:
        """Descriptors (... x D) -> whitened, projected, unit-length vectors."""
        return F.normalize(self.head(self.whiten(d)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.descriptor(x))

    def forward_with_angles(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The vector (N x dim) and, from the same backbone pass, one vector per angle (N x rotations x dim):
        each angle's descriptor whitened and projected as the pooled one is. The pooled vector forgets where
        the coin's features lie around it; the angle vectors keep it, so two coins can be compared turned to
        their best relative orientation (:func:`coinmatch.align.cyclic_similarity`)."""
        parts = self.angle_descriptors(x)
        return self.project(self.over_angles(parts)), self.project(parts).permute(1, 0, 2)


class WithAngles(nn.Module):
    """A network's vector and its angle vectors as the module's two outputs (what the ONNX export traces)."""

    def __init__(self, net: CoinEmbedder):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_with_angles(x)

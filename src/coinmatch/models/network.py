"""The embedding network: [grey] -> [local contrast] -> [rotated views] -> [mask] -> backbone -> pooling [of
its last stages] [by rings] [of the disc] -> [whitening] -> head -> L2-normalised vector.

The network takes RGB in [0, 1] (N x 3 x H x W) and normalises inside, so every runtime
(torch, ONNX Runtime) is fed the same plain pixels.

Two optional invariances live inside the network, so a model file carries them and a catalogue
built with it cannot be searched without them:

- ``grey``: the image is turned to luminance first; colour then cannot separate a photograph from
  a black-and-white catalogue scan of the same coin (nor one lamp's toning from another's).
- ``rotations`` = n > 1: the coin is seen at n angles (0, 360/n, ...) and the pooled descriptors are
  averaged, so the vector hardly changes when the coin lies at another angle (rotation pooling).
  It costs n passes of the backbone.
- ``contrast``: local contrast normalisation (each pixel minus the Gaussian-weighted mean around it, over
  the local standard deviation, sigma one eighth of the image). Exposure, a lamp's strength and a washed-out
  or dark print change the image's brightness and contrast region by region; this takes most of that out
  before the backbone sees it, and the relief's detail stays. On colour input each channel is normalised
  on its own, which also evens out the light's colour region by region.

``stages`` = n > 1: the descriptor joins the pooled feature maps of the backbone's last n stages
(Lite0: blocks, then the head convolution), each unit length: earlier maps keep finer, more local
detail (multi-scale pooling), and whitening weighs what they add.

``rings``: each feature map is pooled over three concentric rings as well as whole (centre, middle and
rim of the coin: the crop is square around it), each part unit length, and the parts joined. A coin's
layout is radial (portrait or value in the middle, legend at the rim), so this keeps where on the coin a
feature lies, and a ring does not change when the coin turns: the descriptor stays rotation invariant
(R-MAC's square regions, Tolias et al. 2016, would not). Same passes, a descriptor four times wider
(whitening brings it back down).

``disc``: pooling (whole, and the rim ring with ``rings``) covers the coin's disc only, not the crop's four
corners outside it. The crop keeps its background, and a turn that is not a quarter turn brings other
background into the corners (benchmarks/turns.py). The corners still reach the disc's cells through their
receptive fields, so this changes little: measured level with the recipe (README).

``mask``: every view the backbone sees is mid-grey outside the coin's disc (after turning, so that all
angles agree), so the background is gone in pixels, not only from pooling, and the whitening is fitted on
masked views. The vector becomes all but blind to turning, yet recall on real photos falls (README): what
lies around a real coin helps to find it. For catalogues whose backgrounds could mislead.

``whiten_dim``: a linear whitening (with its mean) after pooling, fitted in closed form by
:mod:`coinmatch.training.whitening`.

``cells`` = d > 0: cell descriptors beside the vector, where on the coin each feature lies. One feature map
(``cell_map``, counted from the last map; by default the backbone's own: Lite0's block 5, 7 x 7 cells of 192
channels at 224 px; 4 is block 4, 14 x 14 x 112) is kept cell by cell over
the crop's inscribed circle; each cell unit length, centred and whitened to d dimensions (fitted in closed form on
the training photos' cells by :mod:`coinmatch.training.cells`: learned from pairs, or PCA), unit length again, the
whole scaled by one over the square root of the cell count, so that the dot product of two coins' cells is the mean cosine of their cells. A
coin of one design is told from another by where its wear, stains and scratches lie, which pooling forgets. They
come from the same pass, at each of the ``rotations`` angles (:meth:`CoinEmbedder.forward_with_cells`), so a query
turned to each angle is compared with a catalogue coin as it lies (:func:`coinmatch.align.cell_similarity`).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from coinmatch.models.backbones import create_backbone, get_spec, last_feature_maps
from coinmatch.segment import CROP_MARGIN


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
DISC_RADIUS = 1 / (1 + CROP_MARGIN)  # a found coin's radius in its crop (segment.crop_coin), in half widths


def radii(height: int, width: int) -> torch.Tensor:
    """H x W: each pixel centre's distance from the image's centre, in units of the half width (and height)."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
    return torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)


@functools.lru_cache(maxsize=32)
def pool_weights(height: int, width: int, rings: bool = True, disc: bool = False,
                 supersample: int = 8) -> torch.Tensor:
    """Parts x H x W: the share of each cell's area in each pooled part. The first part is the whole map (with
    ``disc``: the coin's disc only, no corners); with ``rings`` the rings follow (centre, middle, then the rim:
    out to the disc's edge with ``disc``, into the corners without). Shares, not 0/1 cells, so that every part
    has cells even on small maps. Computed once per map size (callers must not change it in place)."""
    r = radii(height * supersample, width * supersample)
    outer = DISC_RADIUS if disc else float("inf")
    bounds = (0.0, *RING_EDGES, outer) if rings else (0.0, outer)
    parts = [(r < outer).float()] + [((r >= lo) & (r < hi)).float() for lo, hi in zip(bounds[:-1], bounds[1:])
                                     if rings]
    return F.avg_pool2d(torch.stack(parts)[None], supersample)[0]


MASK_FILL = 0.5  # what ``mask`` puts outside the disc: mid-grey, zero once normalised (mean = std = 0.5)


@functools.lru_cache(maxsize=16)
def disc_cells(height: int, width: int) -> torch.Tensor:
    """The flat indices of the H x W map's cells whose centre lies within the crop's inscribed circle."""
    return torch.nonzero(radii(height, width).flatten() <= 1.0).flatten()


@functools.lru_cache(maxsize=16)
def disc_mask(height: int, width: int) -> torch.Tensor:
    """H x W: 1 inside the coin's disc (radius DISC_RADIUS of the half width), 0 outside, over one pixel's edge."""
    return ((DISC_RADIUS - radii(height, width)) * min(height, width) / 2 + 0.5).clamp(0.0, 1.0)


def weighted_gem(x: torch.Tensor, p: torch.Tensor | float, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """N x C x H x W -> N x (K C): GeM (exponent p) over each of the K parts weighted by ``w`` (K x H x W, from
    :func:`pool_weights`), each part unit length."""
    w = w.to(x.device, x.dtype)  # constants to ONNX's tracer
    means = torch.einsum("nchw,khw->nkc", x.clamp(min=eps).pow(p), w / w.sum(dim=(1, 2), keepdim=True))
    return F.normalize(means.pow(1.0 / p), dim=2).flatten(1)


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY
CONTRAST_SIGMA = 1 / 8  # local contrast: the Gaussian's sigma, as a share of the image's side
CONTRAST_GAIN, CONTRAST_EPS = 0.15, 0.02  # one local standard deviation -> 0.15 about mid-grey; floor of the sd


@functools.lru_cache(maxsize=16)
def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A 1-d Gaussian, radius 3 sigma, summing to 1 (callers must not change it in place)."""
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@functools.lru_cache(maxsize=16)
def kernel_mass(height: int, width: int, sigma: float) -> torch.Tensor:
    """H x W: the share of the Gaussian that falls inside the image at each pixel (1 away from the edges)."""
    k = gaussian_kernel(sigma).view(1, 1, -1)
    r = (k.shape[-1] - 1) // 2
    along = [F.conv1d(torch.ones(1, 1, n), k, padding=r)[0, 0] for n in (height, width)]
    return along[0][:, None] * along[1][None, :]


@functools.lru_cache(maxsize=16)
def blur_kernels(sigma: float, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The separable Gaussian as depthwise convolution weights: along x (C x 1 x 1 x K), along y (C x 1 x K x 1)."""
    k = gaussian_kernel(sigma)
    return k.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), k.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel blurred by a separable Gaussian, weighted by the kernel's share inside the image at the
    edges (normalised convolution: no padding values invented). N x C x H x W, same shape."""
    c, h, w = (int(n) for n in x.shape[1:])  # static sizes: the kernels are constants, not traced ops
    kx, ky = (k.to(x.device, x.dtype) for k in blur_kernels(sigma, c))
    r = (kx.shape[-1] - 1) // 2
    y = F.conv2d(F.conv2d(x, kx, padding=(0, r), groups=c), ky, padding=(r, 0), groups=c)
    return y / kernel_mass(h, w, sigma).to(x.device, x.dtype)


def local_contrast(x: torch.Tensor) -> torch.Tensor:
    """Local contrast normalisation of images in [0, 1]: (x - local mean) / (local sd + eps), scaled about
    mid-grey and clipped to [0, 1]. A change of brightness and contrast over the image (x -> a x + b) leaves it
    nearly as it was."""
    sigma = CONTRAST_SIGMA * min(int(x.shape[-2]), int(x.shape[-1]))
    mean = gaussian_blur(x, sigma)
    sd = gaussian_blur((x - mean) ** 2, sigma).clamp(min=0).sqrt()
    return (0.5 + CONTRAST_GAIN * (x - mean) / (sd + CONTRAST_EPS)).clamp(0.0, 1.0)


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
                 gem_p: float = 3.0, grey: bool = False, rotations: int = 1, stages: int = 1,
                 whiten_dim: int | None = None, rings: bool = False, contrast: bool = False, disc: bool = False,
                 mask: bool = False, cells: int | None = None, cell_map: int = 0):
        super().__init__()
        if rotations < 1:
            raise ValueError(f"rotations must be at least 1, not {rotations}")
        if stages < 1:
            raise ValueError(f"stages must be at least 1, not {stages}")
        self.grey = bool(grey)
        self.rotations = int(rotations)
        self.stages = int(stages)
        self.rings = bool(rings)
        self.disc = bool(disc)
        self.mask = bool(mask)
        self.contrast = bool(contrast)
        spec = get_spec(backbone)
        self.backbone = create_backbone(backbone, weights=weights)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.pool = GeM(gem_p) if pooling == "gem" else AvgPool()
        feat = spec.feature_dim if stages == 1 else sum(self.stage_widths())
        if self.rings:
            feat *= RING_PARTS
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
        self.cells = int(cells or 0)
        self.cell_map = int(cell_map) or spec.cell_map  # counted from the last map (1); 0: the backbone's own
        if self.cells:  # set by the closed-form fit (training.cells); zeros until then
            width = self.map_widths(self.cell_map)[0]
            self.register_buffer("cell_mean", torch.zeros(width))
            self.register_buffer("cell_projection", torch.zeros(width, self.cells))

    def feature_maps(self, x: torch.Tensor, n: int | None = None) -> list[torch.Tensor]:
        """The last ``n`` (by default ``stages``) feature maps of the backbone, shallowest first."""
        return last_feature_maps(self.backbone, (x - self.mean) / self.std, n or self.stages)

    def pooled(self, m: torch.Tensor) -> torch.Tensor:
        """One feature map pooled to a unit vector: whole (or the disc), and by rings if so set."""
        if not (self.rings or self.disc):
            return F.normalize(self.pool(m), dim=1)
        w = pool_weights(m.shape[-2], m.shape[-1], self.rings, self.disc)
        return F.normalize(weighted_gem(m, self.pool.p, w), dim=1)

    def stage_widths(self) -> list[int]:
        """The channels of each pooled feature map."""
        return self.map_widths(self.stages)

    def map_widths(self, n: int) -> list[int]:
        """The channels of the backbone's last ``n`` feature maps (read from one small pass in eval mode, which
        leaves the batch-norm statistics as they are)."""
        training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                return [m.shape[1] for m in self.feature_maps(torch.zeros(1, 3, 64, 64, device=self.mean.device), n)]
        finally:
            self.backbone.train(training)

    def views(self, x: torch.Tensor, rotations: int | None = None) -> torch.Tensor:
        """What the backbone sees: the batch (grey, contrast-normalised, if so set) at each of the ``rotations``
        angles (or ``rotations``, when given), angle-major ((rotations * N) x 3 x H x W; the batch itself when there
        is one angle), masked to the coin's disc if so set."""
        if self.grey:
            y = x[:, 0:1] * LUMA[0] + x[:, 1:2] * LUMA[1] + x[:, 2:3] * LUMA[2]
            x = (local_contrast(y) if self.contrast else y).expand(-1, 3, -1, -1)
        elif self.contrast:
            x = local_contrast(x)
        n = self.rotations if rotations is None else rotations
        if n > 1:
            b = x.shape[0]
            grids = rotation_grids(n, x.shape[2], x.shape[3], x.device)
            x = torch.cat([x] + [F.grid_sample(x, grids[k:k + 1].expand(b, -1, -1, -1), mode="bilinear",
                                               padding_mode="reflection", align_corners=False) for k in range(1, n)])
        if self.mask:  # after turning, so that every angle's corners are the same fill
            m = disc_mask(x.shape[2], x.shape[3]).to(x.device, x.dtype)  # constants to ONNX's tracer
            x = x * m + MASK_FILL * (1 - m)
        return x

    def angle_descriptors(self, x: torch.Tensor, maps: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Per stage, the pooled, L2-normalised descriptor at each angle, angle-major (rotations x N x D).
        ``maps``: the pooled stages' maps of ``x``'s views, when the caller has them."""
        maps = self.feature_maps(self.views(x)) if maps is None else maps
        return [self.pooled(m).view(self.rotations, x.shape[0], -1) for m in maps]

    def cell_vectors(self, m: torch.Tensor) -> torch.Tensor:
        """The cell map (B x C x H x W) -> B x K x C: each of the disc's K cells, unit length."""
        keep = disc_cells(m.shape[-2], m.shape[-1]).to(m.device)  # constants to ONNX's tracer
        return F.normalize(m.flatten(2).index_select(2, keep), dim=1).transpose(1, 2)

    def cell_descriptors(self, m: torch.Tensor, n: int) -> torch.Tensor:
        """The cell map of ``n`` images' views (angle-major) -> N x rotations x (K d): each cell whitened, unit
        length, the whole over the square root of K (see the module's docstring)."""
        c = self.cell_vectors(m)
        c = F.normalize((c - self.cell_mean) @ self.cell_projection, dim=2) / c.shape[1] ** 0.5
        return c.reshape(self.rotations, n, -1).transpose(0, 1)

    def over_angles(self, part: torch.Tensor) -> torch.Tensor:
        """One stage's angle descriptors (rotations x N x D) averaged, L2-normalised (N x D)."""
        return part[0] if self.rotations == 1 else F.normalize(part.mean(dim=0), dim=1)

    @staticmethod
    def joined(parts: list[torch.Tensor]) -> torch.Tensor:
        """The stages' descriptors joined along their last axis, L2-normalised (one stage: as it is)."""
        return parts[0] if len(parts) == 1 else F.normalize(torch.cat(parts, dim=-1), dim=-1)

    def stage_descriptors(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One pooled, L2-normalised descriptor per stage (each averaged over the rotated views)."""
        return [self.over_angles(p) for p in self.angle_descriptors(x)]

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """The descriptor before whitening and head: the stages' descriptors joined, L2-normalised."""
        return self.joined(self.stage_descriptors(x))

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
        descriptor = self.joined([self.over_angles(p) for p in parts])
        return self.project(descriptor), self.project(self.joined(parts)).permute(1, 0, 2)

    def forward_with_cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward_with_angles`' two outputs and the cell descriptors (N x rotations x K d), one pass."""
        if not self.cells:
            raise ValueError("this network has no cell descriptors (cells=0)")
        maps = self.feature_maps(self.views(x), max(self.stages, self.cell_map))
        parts = self.angle_descriptors(x, maps[-self.stages:])
        descriptor = self.joined([self.over_angles(p) for p in parts])
        return (self.project(descriptor), self.project(self.joined(parts)).permute(1, 0, 2),
                self.cell_descriptors(maps[-self.cell_map], x.shape[0]))


class WithCells(nn.Module):
    """A network's vector, angle vectors and cell descriptors as the module's three outputs (the ONNX export)."""

    def __init__(self, net: CoinEmbedder):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net.forward_with_cells(x)


class WithAngles(nn.Module):
    """A network's vector and its angle vectors as the module's two outputs (what the ONNX export traces)."""

    def __init__(self, net: CoinEmbedder):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_with_angles(x)

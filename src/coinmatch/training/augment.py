"""Augmentations that imitate a second photograph, or a catalogue scan, of the same coin.

Every sample draws its own parameters from its own generator. The order follows the physics:
the coin lies on some background, at some angle; the camera sees it tilted, off-centre, at some
scale; the lamp lights it from one side (shading, relief shadows, highlights) with some colour;
the camera exposes, blurs, adds noise, and the file is compressed; an old catalogue prints it in
black and white. Light matters most: one silver coin can look grey under one lamp and gold-toned
under another, with shadows falling the other way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from coinmatch.segment import CROP_MARGIN, coin_mask


@dataclass
class AugmentConfig:
    background: float = 0.5  # probability of replacing the background
    tilt: float = 0.08  # max perspective corner shift, fraction of the side
    rotation: float = 180.0  # max turn either way, degrees (180: any angle)
    scale: tuple[float, float] = (0.85, 1.12)
    shift: float = 0.06  # max off-centre shift, fraction of the side
    light: float = 0.9  # probability of directional light (shading + relief + highlight)
    exposure: tuple[float, float] = (0.6, 1.4)
    gamma: tuple[float, float] = (0.7, 1.4)
    colour: float = 0.8  # probability of a colour-temperature / toning change
    grey: float = 0.35  # probability of a greyscale image
    print_like: float = 0.1  # probability of a high-contrast black-and-white print
    blur: float = 0.25  # probability of defocus or motion blur
    low_res: float = 0.35  # probability of shrinking to 64-160 px and back (small catalogue photos)
    noise: float = 0.4
    jpeg: float = 0.5


def _background(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = img.shape[0]
    mask = coin_mask(side, radius_fraction=0.99 / (1 + CROP_MARGIN)).astype(np.float32)[..., None] / 255.0
    kind = rng.integers(0, 3)
    if kind == 0:  # flat card or cloth
        bg = np.full_like(img, rng.integers(0, 256, 3, dtype=np.uint8))
    elif kind == 1:  # gradient
        a, b = rng.integers(0, 256, (2, 3))
        t = np.linspace(0, 1, side)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, side)[:, None, None]
        bg = np.broadcast_to(a * (1 - t) + b * t, img.shape).astype(np.uint8)
    else:  # textured (fabric, wood, paper)
        base = rng.integers(0, 256, 3)
        tex = rng.normal(0, rng.uniform(5, 40), (side // 4 + 1, side // 4 + 1, 1))
        tex = cv2.resize(tex, (side, side), interpolation=cv2.INTER_CUBIC)[..., None]
        bg = np.clip(base + tex, 0, 255).astype(np.uint8)
    soft = cv2.GaussianBlur(mask, (5, 5), 1.5)[..., None] if mask.ndim == 3 else mask
    return (img * soft + bg * (1 - soft)).astype(np.uint8)


def _geometry(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, out_size: int) -> np.ndarray:
    side = img.shape[0]
    c = side / 2
    # a coin can lie at any angle (one draw either way, so runs before ``rotation`` existed draw the same views)
    angle = rng.uniform(0, 360) if cfg.rotation >= 180 else rng.uniform(-cfg.rotation, cfg.rotation)
    scale = rng.uniform(*cfg.scale)
    m = cv2.getRotationMatrix2D((c, c), angle, scale)
    m[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * side
    src = np.float32([[0, 0], [side, 0], [side, side], [0, side]])
    ones = np.ones((4, 1), np.float32)
    dst = (np.hstack([src, ones]) @ m.T).astype(np.float32)
    dst += rng.uniform(-cfg.tilt, cfg.tilt, (4, 2)).astype(np.float32) * side  # camera tilt
    k = out_size / side
    h = cv2.getPerspectiveTransform(src, dst * k)
    border = tuple(int(v) for v in img[0, 0])
    return cv2.warpPerspective(img, h, (out_size, out_size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT if rng.random() < 0.5 else cv2.BORDER_REFLECT,
                               borderValue=border)


def _light(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Directional light: a shading ramp, relief shadows along the light, a specular highlight."""
    side = x.shape[0]
    theta = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(theta), np.sin(theta)])
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
    ramp = (1 + rng.uniform(0.05, 0.4) * (xx * d[0] + yy * d[1]) * 2).astype(np.float32)
    x = x * ramp[..., None]
    grey = cv2.GaussianBlur(x.mean(axis=2).astype(np.float32), (3, 3), 0.8)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    relief = (gx * d[0] + gy * d[1]) * rng.uniform(0.02, 0.12)  # lit slopes brighter, far slopes in shadow
    x = x + relief[..., None]
    if rng.random() < 0.5:
        cx, cy = rng.uniform(0.2, 0.8, 2) * side
        r = rng.uniform(0.08, 0.3) * side
        blob = np.exp(-(((xx + 0.5) * side - cx) ** 2 + ((yy + 0.5) * side - cy) ** 2) / (2 * r * r))
        x = x + rng.uniform(0.05, 0.25) * blob[..., None]
    return x.astype(np.float32)


def _colour(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(0, 3)
    if kind == 0:  # colour temperature: warm or cool lamp
        t = rng.uniform(-0.25, 0.25)
        gains = np.array([1 + t, 1 + rng.uniform(-0.05, 0.05), 1 - t], np.float32)
    elif kind == 1:  # toning: silver looking gold, copper looking brown or grey
        tone = rng.choice([[1.15, 1.0, 0.7], [0.9, 0.95, 1.05], [1.1, 0.85, 0.7], [1.0, 1.0, 1.0]])
        gains = np.array(tone, np.float32) * rng.uniform(0.9, 1.1)
    else:  # saturation change
        grey = x.mean(axis=2, keepdims=True)
        return grey + (x - grey) * rng.uniform(0.2, 1.6)
    return x * gains


def _blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:  # defocus: a disk
        r = int(rng.integers(1, 4))
        k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
        cv2.circle(k, (r, r), r, 1.0, -1)
    else:  # motion: a line at some angle
        n = int(rng.integers(3, 9))
        k = np.zeros((n, n), np.float32)
        k[n // 2, :] = 1
        k = cv2.warpAffine(k, cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(0, 180), 1.0), (n, n))
    return cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))


def augment(crop: np.ndarray, rng: np.random.Generator, out_size: int, cfg: AugmentConfig | None = None) -> np.ndarray:
    """One random view of a coin crop (uint8 RGB, coin centred) at ``out_size`` px."""
    cfg = cfg or AugmentConfig()
    img = crop
    if rng.random() < cfg.background:
        img = _background(img, rng)
    img = _geometry(img, rng, cfg, out_size)
    x = img.astype(np.float32) / 255.0
    if rng.random() < cfg.light:
        x = _light(x, rng)
    if rng.random() < cfg.colour:
        x = _colour(x, rng)
    x = np.clip(x * rng.uniform(*cfg.exposure), 0, 1) ** rng.uniform(*cfg.gamma)
    if rng.random() < cfg.grey + cfg.print_like:
        g = x.mean(axis=2, keepdims=True)
        if rng.random() < cfg.print_like / (cfg.grey + cfg.print_like):  # old printed catalogue
            g = np.clip((g - 0.5) * rng.uniform(1.5, 2.5) + 0.5, 0, 1)
        x = np.repeat(g, 3, axis=2)
    img = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    if rng.random() < cfg.blur:
        img = _blur(img, rng)
    if rng.random() < cfg.low_res:
        s = int(rng.integers(56, 160))
        if s < out_size:
            img = cv2.resize(cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA), (out_size, out_size),
                             interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.noise:
        img = np.clip(img + rng.normal(0, rng.uniform(2, 10), img.shape), 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img


def augmentation_grid(crop: np.ndarray, n: int = 24, out_size: int = 160, seed: int = 0, cols: int = 6) -> np.ndarray:
    """The original then n-1 augmented views in a grid, for a person to check."""
    rng = np.random.default_rng(seed)
    views = [cv2.resize(crop, (out_size, out_size), interpolation=cv2.INTER_AREA)]
    views += [augment(crop, rng, out_size) for _ in range(n - 1)]
    rows = []
    for i in range(0, n, cols):
        row = views[i:i + cols]
        row += [np.full_like(views[0], 255)] * (cols - len(row))
        rows.append(np.hstack(row))
    return np.vstack(rows)

"""Coin finding: locate the coin in a photo of one coin, crop it square and mask the background.

Classical and fast (tens of ms per photo on one core): Hough circles on a downscaled copy,
each candidate scored by how much of its rim lies on a strong edge; the largest
well-supported circle wins. Hough keeps one circle per centre, so the inner ring of a bimetallic
coin (1 and 2 euro) can still win alone; a ring about it, a third to a half wider, whose rim is
as well seen, then takes its place.
When no circle is convincing, a contour of the foreground (Otsu) is tried; when that
fails too, the whole image is used and the result says so.

Hough's circle is coarse (a pixel of the working copy is about 1 % of a coin's radius there) and a pixel's change
in the photo can make another candidate win: on the euro pairs, a grey copy of a photo moved the circle by more than
3 % of its radius on 61 of 168 photos, one turned by a random angle on 74. So the circle that wins is refined on a
sharper copy: the rim is traced round the coin in polar coordinates as the path of the strongest step in brightness
(a box difference a few % of the radius wide, so that the fine texture of a cloth or of the coin's design counts for
little), and a circle is fitted to the path by RANSAC, so that a neighbour or a straight edge that the trace follows
for part of the way is left out; three passes narrow the band. Refined, 6 and 4 of those photos moved that far
(a study of the finder now in git history, benchmarks/finder.py). Piles' coins are refined too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK_SIDE = 256  # detection runs on a copy whose longest side is this
MIN_RADIUS = 0.1  # of the shorter side
MIN_SUPPORT = 0.35  # fraction of the rim that must lie on an edge
# A coin may leave the frame by this share of its radius: catalogue photos and close-ups crop tight. A circle's
# rim outside the frame counts as unsupported, so a coin that leaves it must be seen well to win. Raised from
# 0.15 after looking at every circle that moved in the real photo sets (the finder study in git history):
# 0.25 moves 11 of 3,281 real photos (1,500 of them OCRE), 9 plainly onto the coin and none plainly off it;
# 0.35 let background circles win as well.
MAX_LEAVE = 0.25
# The outer ring of a bimetallic coin: 1 euro 23.25 / 16.25 mm = 1.43, 2 euro 25.75 / 18.75 mm = 1.37 times the
# inner disc. Its rim must be nearly as well seen as the inner one's (OUTER_SUPPORT of it, and MIN_RING_SUPPORT),
# its edges must run along the circle (gradient within ~32 degrees of the radius) and be found all round (in
# OUTER_COVER of the twelfths of its rim inside the frame), and it must share the centre (OUTER_SLACK px of the
# working copy). A wider window (1.1-1.6 times) also moved the inner rim line of 10 cent coins outwards, rightly,
# but put circles on the background about ancient coins on Wikimedia's photos; this one (the finder study)
# moves 16 of 3,281 real photos, 15 onto the coin's edge (12 of them 1 and 2 euro coins) and one past it.
OUTER_RATIO = (1.25, 1.55)
OUTER_SUPPORT, MIN_RING_SUPPORT, OUTER_COVER, OUTER_SLACK = 0.85, 0.5, 0.75, 2
RADIAL_COS = 0.85
# Refinement: each pass looks for the rim within BAND of the radius about the circle so far, as the strongest step in
# brightness across a box STEP of the radius wide; REFINE_SIDE: the refining copy is shrunk so that the radius is at
# most this many pixels; a refined circle is kept when at least MIN_RIM_FIT of the traced rim lies on it (within
# RIM_TOLERANCE of the radius).
REFINE_PASSES = ((0.2, 0.04), (0.1, 0.03), (0.05, 0.015))  # (BAND, STEP)
# Which coin finder cropped a catalogue's coins (catalogues keep it): 1, Hough's circle as it won; 2, refined onto
# the rim. Raise it when a change moves the circles.
FINDER_VERSION = 2
REFINE_SIDE, REFINE_ANGLES, MIN_RIM_FIT, RIM_TOLERANCE = 300, 360, 0.5, 0.02


@dataclass(frozen=True)
class Circle:
    x: float
    y: float
    r: float


@dataclass(frozen=True)
class CoinLocation:
    """Where the coin is in the original image (pixels) and how it was found."""

    circle: Circle
    found: bool
    method: str  # "hough", "contour" or "whole-image"
    support: float  # fraction of the rim on an edge (0 when not found)

    @property
    def note(self) -> str | None:
        if self.found:
            return None
        return "no coin outline found; the whole image was used"


def _edge_map(grey: np.ndarray) -> np.ndarray:
    med = float(np.median(grey))
    lo, hi = int(max(0, 0.66 * med)), int(min(255, 1.33 * med))
    edges = cv2.Canny(grey, max(lo, 20), max(hi, 60))
    return cv2.dilate(edges, np.ones((3, 3), np.uint8))


def _inside_frame(x: float, y: float, r: float, w: int, h: int) -> bool:
    """A coin lies (mostly) inside the photo: its circle may leave the frame by at most ``MAX_LEAVE`` of its radius."""
    k = 1 - MAX_LEAVE  # numbers or arrays of them
    return (x - k * r >= 0) & (y - k * r >= 0) & (x + k * r <= w) & (y + k * r <= h)


def _rim_support(edges: np.ndarray, c: Circle, samples: int = 180) -> float:
    t = np.linspace(0, 2 * np.pi, samples, endpoint=False)
    xs = np.round(c.x + c.r * np.cos(t)).astype(int)
    ys = np.round(c.y + c.r * np.sin(t)).astype(int)
    h, w = edges.shape
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    if inside.sum() < samples * 0.6:
        return 0.0
    return float((edges[ys[inside], xs[inside]] > 0).sum()) / samples


def _ring_support(edges: np.ndarray, grad: tuple[np.ndarray, np.ndarray], xs: np.ndarray, ys: np.ndarray,
                  rs: np.ndarray, samples: int = 180) -> tuple[np.ndarray, np.ndarray]:
    """For circles (xs, ys, rs), the share of the rim inside the frame on an edge that runs along the circle (0
    when less than 60 % of the rim is inside), and the share of the rim's twelfths (those inside the frame) with a
    quarter of their length so supported."""
    t = np.linspace(0, 2 * np.pi, samples, endpoint=False)
    cos, sin = np.cos(t), np.sin(t)
    px = np.round(xs[:, None] + rs[:, None] * cos).astype(int)
    py = np.round(ys[:, None] + rs[:, None] * sin).astype(int)
    h, w = edges.shape
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    px, py = np.clip(px, 0, w - 1), np.clip(py, 0, h - 1)
    gx, gy = grad[0][py, px], grad[1][py, px]
    radial = np.abs(gx * cos + gy * sin) >= RADIAL_COS * (np.hypot(gx, gy) + 1e-6)
    hit = (edges[py, px] > 0) & radial & inside
    support = np.where(inside.sum(1) >= 0.6 * samples, hit.sum(1) / np.maximum(inside.sum(1), 1), 0.0)
    twelfths = np.arange(samples) * 12 // samples
    seen = np.stack([inside[:, twelfths == k].sum(1) for k in range(12)], 1)
    held = np.stack([hit[:, twelfths == k].sum(1) for k in range(12)], 1)
    cover = ((held >= 0.25 * np.maximum(seen, 1)) & (seen > 0)).sum(1) / np.maximum((seen > 0).sum(1), 1)
    return support, cover


def _outer_ring(blurred: np.ndarray, edges: np.ndarray, c: Circle) -> tuple[Circle, float] | None:
    """The outer ring of a bimetallic coin whose inner disc is ``c``, if one is seen (see OUTER_RATIO).
    ``blurred``: the grey working copy as Hough saw it."""
    h, w = blurred.shape
    smooth = blurred.astype(np.float32)
    grad = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    inner, _ = _ring_support(edges, grad, np.array([c.x]), np.array([c.y]), np.array([c.r]))
    shifts = np.arange(-OUTER_SLACK, OUTER_SLACK + 1, 1.0)
    dx, dy, rs = np.meshgrid(shifts, shifts, np.arange(c.r * OUTER_RATIO[0], c.r * OUTER_RATIO[1], 1.0))
    xs, ys, rs = c.x + dx.ravel(), c.y + dy.ravel(), rs.ravel()
    fits = _inside_frame(xs, ys, rs, w, h)
    if not fits.any():
        return None
    xs, ys, rs = xs[fits], ys[fits], rs[fits]
    support, cover = _ring_support(edges, grad, xs, ys, rs)
    support = np.where(cover >= OUTER_COVER, support, 0.0)
    best = int(np.argmax(support))
    if support[best] < max(MIN_RING_SUPPORT, OUTER_SUPPORT * float(inner[0])):
        return None
    return Circle(float(xs[best]), float(ys[best]), float(rs[best])), float(support[best])


def _hough(grey: np.ndarray, edges: np.ndarray) -> tuple[Circle, float] | None:
    h, w = grey.shape
    short = min(h, w)
    blurred = cv2.GaussianBlur(grey, (5, 5), 1.5)
    found = cv2.HoughCircles(
        blurred, cv2.HOUGH_GRADIENT, dp=1.0, minDist=short / 8, param1=100, param2=18,
        minRadius=int(short * MIN_RADIUS), maxRadius=int(max(h, w) * 0.6),
    )
    if found is None:
        return None
    scored = []
    for x, y, r in found[0][:40]:
        c = Circle(float(x), float(y), float(r))
        if not _inside_frame(c.x, c.y, c.r, w, h):
            continue
        scored.append((c, _rim_support(edges, c)))
    if not scored:
        return None
    best = max(s for _, s in scored)
    if best < MIN_SUPPORT:
        return None
    good = [(c, s) for c, s in scored if s >= 0.75 * best]
    chosen = max(good, key=lambda cs: cs[0].r)
    return _outer_ring(blurred, edges, chosen[0]) or chosen


def _contour(grey: np.ndarray) -> tuple[Circle, float] | None:
    h, w = grey.shape
    blurred = cv2.GaussianBlur(grey, (5, 5), 0)
    _, th = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # the background is whatever touches the border most
    border = np.concatenate([th[0], th[-1], th[:, 0], th[:, -1]])
    if border.mean() > 127:
        th = 255 - th
    th = cv2.morphologyEx(th, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    contours, _ = cv2.findContours(th, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    cnt = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(cnt)
    (x, y), r = cv2.minEnclosingCircle(cnt)
    if r < min(h, w) * MIN_RADIUS or area <= 0:
        return None
    if not _inside_frame(x, y, r, w, h):
        return None
    fill = area / (np.pi * r * r)  # a round coin fills its enclosing circle
    perimeter = cv2.arcLength(cnt, True)
    circularity = 4 * np.pi * area / (perimeter * perimeter) if perimeter > 0 else 0.0
    if fill < 0.6 or circularity < 0.6:
        return None
    return Circle(float(x), float(y), float(r)), float(fill)


def _rim_path(cost: np.ndarray) -> np.ndarray:
    """The column index, row by row, of the path through ``cost`` (angles x radii) of greatest sum that moves at
    most one column a row (dynamic programming)."""
    n, m = cost.shape
    total = cost[0].copy()
    back = np.zeros((n, m), np.int8)
    low = np.full(1, -np.inf, cost.dtype)
    for i in range(1, n):
        options = np.stack([np.concatenate([low, total[:-1]]), total, np.concatenate([total[1:], low])])
        j = np.argmax(options, 0)  # 0: from the column before, 1: the same, 2: the one after
        total = options[j, np.arange(m)] + cost[i]
        back[i] = j - 1
    path = np.empty(n, int)
    path[-1] = int(np.argmax(total))
    for i in range(n - 1, 0, -1):
        path[i - 1] = path[i] + back[i, path[i]]
    return path


def _fit_circle(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> Circle:
    """Least-squares circle through points (the algebraic fit of Kasa), weighted."""
    sw = np.sqrt(weight)
    a = np.stack([x, y, np.ones_like(x)], 1) * sw[:, None]
    (p, q, c), *_ = np.linalg.lstsq(a, (x * x + y * y) * sw, rcond=None)
    cx, cy = p / 2, q / 2
    return Circle(float(cx), float(cy), float(np.sqrt(max(c + cx * cx + cy * cy, 1e-6))))


def _robust_circle(x: np.ndarray, y: np.ndarray, weight: np.ndarray, tol: float,
                   tries: int = 400) -> tuple[Circle, np.ndarray] | None:
    """The circle through most of the points (x, y) in order round a rim, within ``tol``, and which points lie on
    it: circles through three points a third of the way round from each other (RANSAC, seeded), the one with most
    points on it refitted to them by least squares. A straight edge or a neighbour that the trace follows for part of
    the way is left out rather than averaged in. None when no circle holds three points."""
    n = len(x)
    rng = np.random.default_rng(0)
    first = rng.integers(0, n, tries)
    wobble = rng.integers(-n // 12, n // 12 + 1, (tries, 2))
    i, j, k = first, (first + n // 3 + wobble[:, 0]) % n, (first + 2 * n // 3 + wobble[:, 1]) % n
    x1, y1, x2, y2, x3, y3 = x[i], y[i], x[j], y[j], x[k], y[k]
    d = 2 * (x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))
    d = np.where(np.abs(d) < 1e-9, np.nan, d)  # three points in a line: no circle (NaN, holding no point)
    s1, s2, s3 = x1 * x1 + y1 * y1, x2 * x2 + y2 * y2, x3 * x3 + y3 * y3
    cx = (s1 * (y2 - y3) + s2 * (y3 - y1) + s3 * (y1 - y2)) / d
    cy = (s1 * (x3 - x2) + s2 * (x1 - x3) + s3 * (x2 - x1)) / d
    r = np.hypot(x1 - cx, y1 - cy)
    on = np.abs(np.hypot(x[None, :] - cx[:, None], y[None, :] - cy[:, None]) - r[:, None]) <= tol
    best = on[int(np.argmax(on.sum(1)))]
    for _ in range(2):
        if best.sum() < 3:
            return None
        fit = _fit_circle(x[best], y[best], weight[best])
        best = np.abs(np.hypot(x - fit.x, y - fit.y) - fit.r) <= tol
    return fit, best


def _refine_pass(grey: np.ndarray, c: Circle, band: float, step: float) -> tuple[Circle, float] | None:
    """One pass of the refinement (see the module's note): the circle fitted to the rim traced within ``band`` of
    ``c``'s radius, and the share of the traced rim on it; None when too little of the rim can be seen."""
    k = max(2, int(round(step * c.r)))
    rs = np.arange(c.r * (1 - band), c.r * (1 + band), 1.0, dtype=np.float32)
    if len(rs) < 3:
        return None
    t = np.linspace(0, 2 * np.pi, REFINE_ANGLES, endpoint=False)
    cos, sin = np.cos(t).astype(np.float32), np.sin(t).astype(np.float32)
    mx, my = c.x + rs[None, :] * cos[:, None], c.y + rs[None, :] * sin[:, None]
    polar = cv2.remap(grey, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    h, w = grey.shape
    seen = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    # the step across each radius: mean brightness of the k pixels outside less that of the k inside
    sums = np.cumsum(np.pad(polar, ((0, 0), (k + 1, k + 1)), mode="edge"), 1, dtype=np.float64)
    j = np.arange(len(rs)) + k + 1
    strength = np.abs((sums[:, j + k] - sums[:, j]) - (sums[:, j - 1] - sums[:, j - 1 - k])) / k
    strength[~seen] = 0  # the rim outside the frame tells nothing
    half = REFINE_ANGLES // 2  # trace round twice and keep the middle turn, so that where it starts matters little
    path = _rim_path(np.concatenate([strength, strength]).astype(np.float32))[half:half + REFINE_ANGLES]
    order = np.r_[half:REFINE_ANGLES, 0:half]
    r, weight = rs[path], strength[order, path]
    x, y = c.x + r * cos[order], c.y + r * sin[order]
    traced = weight > 0
    if traced.sum() < 0.25 * REFINE_ANGLES:
        return None
    got = _robust_circle(x[traced], y[traced], weight[traced], RIM_TOLERANCE * c.r)
    if got is None:
        return None
    return got[0], float(got[1].sum() / traced.sum())


def _refine(rgb: np.ndarray, c: Circle) -> Circle:
    """``c`` refined onto the coin's rim (see the module's note); ``c`` itself when the rim can't be traced or the
    circle would wander off (by a fifth of the radius or more)."""
    if not REFINE_PASSES:
        return c
    h, w = rgb.shape[:2]
    reach = c.r * (1 + REFINE_PASSES[0][0] + REFINE_PASSES[0][1]) + 4  # the window that the passes can look into
    x0, y0 = max(0, int(c.x - reach)), max(0, int(c.y - reach))
    x1, y1 = min(w, int(np.ceil(c.x + reach)) + 1), min(h, int(np.ceil(c.y + reach)) + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return c
    window = rgb[y0:y1, x0:x1]
    scale = min(1.0, REFINE_SIDE / max(c.r, 1.0))
    if scale < 1.0:
        window = cv2.resize(window, (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
                            interpolation=cv2.INTER_AREA)
    grey = cv2.GaussianBlur(cv2.cvtColor(window, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.2)
    start = now = Circle((c.x - x0) * scale, (c.y - y0) * scale, c.r * scale)
    for band, step in REFINE_PASSES:
        got = _refine_pass(grey, now, band, step)
        if got is None:
            return c
        now, fit = got
    out = Circle(now.x / scale + x0, now.y / scale + y0, now.r / scale)
    if fit < MIN_RIM_FIT or max(abs(now.x - start.x), abs(now.y - start.y), abs(now.r - start.r)) >= 0.2 * start.r \
            or not _inside_frame(out.x, out.y, out.r, w, h):
        return c
    return out


def locate_coin(rgb: np.ndarray) -> CoinLocation:
    """Find the coin in an RGB photo that shows one coin."""
    h, w = rgb.shape[:2]
    # small photos are enlarged too: Hough circles are steadier at this size (pairs recall@1 0.964 vs 0.940)
    scale = WORK_SIDE / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    edges = _edge_map(grey)
    for method, finder in (("hough", lambda: _hough(grey, edges)), ("contour", lambda: _contour(grey))):
        hit = finder()
        if hit is not None:
            c, support = hit
            return CoinLocation(_refine(rgb, Circle(c.x / scale, c.y / scale, c.r / scale)), True, method, support)
    return CoinLocation(Circle(w / 2, h / 2, min(h, w) / 2), False, "whole-image", 0.0)


CROP_MARGIN = 0.04  # a found coin's crop reaches this share of its radius beyond the rim


def crop_coin(rgb: np.ndarray, loc: CoinLocation, margin: float = CROP_MARGIN, mask: bool = True,
              fill: int = 0) -> np.ndarray:
    """A square crop centred on the coin; outside the circle set to ``fill`` when ``mask``.

    The crop is padded with ``fill`` where the square leaves the frame, so the coin stays centred.
    """
    c = loc.circle
    half = c.r * (1 + margin) if loc.found else c.r
    x0, y0 = int(round(c.x - half)), int(round(c.y - half))
    side = max(1, int(round(2 * half)))
    h, w = rgb.shape[:2]
    out = np.full((side, side, 3), fill, np.uint8)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(w, x0 + side), min(h, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    if mask and loc.found:
        m = np.zeros((side, side), np.uint8)
        cv2.circle(m, (side // 2, side // 2), int(round(c.r)), 255, -1, lineType=cv2.LINE_AA)
        out = np.where(m[..., None] > 127, out, np.uint8(fill))
    return out


def coin_mask(side: int, radius_fraction: float = 1 / (1 + CROP_MARGIN)) -> np.ndarray:
    """The circular mask of a crop made by :func:`crop_coin` (uint8, 255 inside)."""
    m = np.zeros((side, side), np.uint8)
    cv2.circle(m, (side // 2, side // 2), int(round(side / 2 * radius_fraction)), 255, -1)
    return m


def find_coins(rgb: np.ndarray, max_coins: int = 200) -> list[Circle]:
    """Every coin in a photo of several coins (a pile or a tray), as circles in image pixels."""
    h, w = rgb.shape[:2]
    scale = 1024 / max(h, w) if max(h, w) > 1024 else 1.0
    small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (7, 7), 2)
    short = min(grey.shape)
    found = cv2.HoughCircles(grey, cv2.HOUGH_GRADIENT, dp=1.2, minDist=short / 25, param1=100, param2=40,
                             minRadius=int(short / 40), maxRadius=int(short / 5))
    if found is None:
        return []
    edges = _edge_map(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    circles = [Circle(float(x), float(y), float(r)) for x, y, r in found[0]]
    circles = [c for c in circles if _rim_support(edges, c) >= MIN_SUPPORT]
    if circles:  # coins in one photo are of similar size: drop spurious giant circles
        median_r = float(np.median([c.r for c in circles]))
        circles = [c for c in circles if c.r <= 1.8 * median_r]
    kept: list[Circle] = []
    for c in sorted(circles, key=lambda c: -c.r):  # drop circles inside a bigger one (inner rings)
        if all(np.hypot(c.x - k.x, c.y - k.y) > 0.7 * max(c.r, k.r) for k in kept):
            kept.append(c)
    return [_refine(rgb, Circle(c.x / scale, c.y / scale, c.r / scale)) for c in kept[:max_coins]]

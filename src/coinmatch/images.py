"""The only place that opens image files.

Every image enters coinmatch through :func:`load_rgb`: EXIF orientation is applied, every
mode (greyscale, palette, alpha, 16-bit, CMYK) becomes 8-bit RGB, a pixel limit guards
against decompression bombs, and any failure becomes one :class:`ImageError` that names
the file and the cause.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from coinmatch import CoinmatchError

#: Largest image accepted, in pixels (about 12,000 x 12,000). Larger files are refused, not decoded.
MAX_PIXELS = 150_000_000
#: Longest side kept after loading; larger photos are shrunk once, on load.
MAX_SIDE = 2048

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(CoinmatchError):
    """An image could not be used; the message names the file and why."""


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, compositing transparency onto white."""
    if im.mode.startswith("I") or im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if im.mode == "F":  # floating point: stretch what is there
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else arr * 0
        elif arr.max() > 255:  # 16-bit samples
            arr = arr / 257.0
        im = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("LA", "PA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    if im.mode == "CMYK":
        # PIL's CMYK->RGB is the naive formula; Adobe JPEGs store inverted CMYK, which PIL already undoes.
        return im.convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def open_image(source: str | Path | bytes, name: str | None = None, max_side: int | None = MAX_SIDE) -> Image.Image:
    """Open, verify and normalise an image to RGB. ``source`` is a path or the file's bytes."""
    label = name or (str(source) if not isinstance(source, bytes) else "<uploaded image>")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{label}: file not found")
        if path.is_dir():
            raise ImageError(f"{label}: is a folder, not an image")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{label}: cannot be read ({exc.strerror or exc})") from exc
    else:
        data = source
    if not data:
        raise ImageError(f"{label}: file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{label}: image too large ({w}x{h} pixels; the limit is {MAX_PIXELS:,})")
            if max_side and max(w, h) > 2 * max_side:
                # JPEG can decode at 1/2, 1/4, 1/8 scale: much faster for huge photos.
                im.draft("RGB", (max_side, max_side))
            im.load()
            im = ImageOps.exif_transpose(im)
            im = _to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: image too large (decompression-bomb guard: {exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not an image file, or a format that cannot be read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Truncated or corrupt data surfaces here ("image file is truncated", "broken data stream").
        raise ImageError(f"{label}: corrupt or truncated image ({exc})") from exc
    if min(im.size) < 8:
        raise ImageError(f"{label}: image too small ({im.size[0]}x{im.size[1]} pixels)")
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im


def to_rgb_array(im: Image.Image, name: str, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """An image already in memory (a PIL image) as :func:`load_rgb` gives a file: size-checked, EXIF-oriented,
    8-bit RGB, shrunk to ``max_side``."""
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name}: image too large ({w}x{h} pixels; the limit is {MAX_PIXELS:,})")
    if min(w, h) < 8:
        raise ImageError(f"{name}: image too small ({w}x{h} pixels)")
    try:
        im = _to_rgb(ImageOps.exif_transpose(im))
    except (OSError, ValueError) as exc:
        raise ImageError(f"{name}: cannot be read as an image ({exc})") from exc
    if max_side and max(im.size) > max_side:
        im = im.copy()
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.array(im, dtype=np.uint8)


def load_rgb(source: str | Path | bytes, name: str | None = None, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """Load an image as an ``H x W x 3`` uint8 RGB array (see :func:`open_image`)."""
    return np.array(open_image(source, name=name, max_side=max_side), dtype=np.uint8)  # a writable copy


WRITE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def square_resized(rgb: np.ndarray, side: int) -> np.ndarray:
    """An image resized to ``side`` x ``side`` (area averaging to shrink, cubic to enlarge)."""
    return cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA if rgb.shape[0] > side else cv2.INTER_CUBIC)


def save_rgb(array: np.ndarray, path: str | Path, quality: int = 90) -> None:
    """Write an RGB uint8 array as JPEG, PNG, WebP or TIFF (by suffix), whole or not at all (an earlier file
    there stays as it was if the write fails). A suffix of another kind, or a write the system refuses (no
    room, no permission), is one :class:`ImageError` naming the file."""
    from coinmatch.files import replaced

    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: cannot write an image named {path.suffix or 'without a suffix'}; "
                         f"name it {', '.join(sorted(WRITE_FORMATS)[:-1])} or {sorted(WRITE_FORMATS)[-1]}")
    try:
        with replaced(path) as tmp:
            Image.fromarray(array).save(tmp, format=fmt, quality=quality)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write ({exc.strerror or exc})") from exc

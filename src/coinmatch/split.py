"""Plates, piles and scanned catalogues -> one crop per coin: where it was, and the caption printed beside it.

A photo, a scanned plate or a PDF of a scanned auction catalogue (every page rasterised with pypdfium2 at
``DPI``) is searched for every coin (:func:`coinmatch.segment.find_coins`). Each coin is cropped square with its
mask (a PNG whose alpha is the coin) and written with a manifest row: the source and page, the coin's centre
(``x``, ``y``) and radius (``r``) in the source's pixels, the ``caption`` printed under the coin (the band from
its rim down ``CAPTION_DEPTH`` radii, ``CAPTION_WIDTH`` radii wide) read by Tesseract, and the ``lot`` number
where the caption gives one. Without Tesseract the captions are left empty, with one warning.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from coinmatch import CoinmatchError
from coinmatch.collection import IMAGE_SUFFIXES, image_files
from coinmatch.images import MAX_PIXELS, load_rgb, save_rgb
from coinmatch.segment import Circle, CoinLocation, crop_coin, find_coins

log = logging.getLogger(__name__)
DPI = 200  # PDF pages rasterised at this resolution
CAPTION_DEPTH, CAPTION_WIDTH = 0.9, 2.8  # the caption band under a coin, in its radii
LOT = re.compile(r"(?i)\b(?:lot|no\.?|nr\.?|n°|#)\s*(\d{1,6})\b")
FIRST_NUMBER = re.compile(r"^\D{0,3}(\d{1,6})\b")
COLUMNS = ["image", "id", "source", "page", "x", "y", "r", "caption", "lot"]


def pages(path: Path) -> Iterator[tuple[int | None, np.ndarray]]:
    """(page number or None, RGB) of a photo or of every page of a PDF."""
    if path.suffix.lower() != ".pdf":
        yield None, load_rgb(path, max_side=None)
        return
    import pypdfium2

    try:
        doc = pypdfium2.PdfDocument(str(path))
    except (pypdfium2.PdfiumError, OSError) as exc:
        raise CoinmatchError(f"{path}: not a readable PDF ({exc})") from exc
    try:
        for i in range(len(doc)):
            page = doc[i]
            w, h = page.get_size()
            scale = min(DPI / 72, (MAX_PIXELS / max(1.0, w * h)) ** 0.5)
            yield i + 1, np.asarray(page.render(scale=scale).to_pil().convert("RGB"))
    finally:
        doc.close()


def tesseract_ready() -> bool:
    if shutil.which("tesseract") is None:
        return False
    try:
        import pytesseract  # noqa: F401
    except ImportError:
        return False
    return True


def caption_of(rgb: np.ndarray, c: Circle) -> str:
    """The text printed under a coin (one line, spaces folded), read by Tesseract."""
    import pytesseract

    h, w = rgb.shape[:2]
    y0, y1 = int(c.y + 1.02 * c.r), int(c.y + (1.02 + CAPTION_DEPTH) * c.r)
    x0, x1 = int(c.x - CAPTION_WIDTH / 2 * c.r), int(c.x + CAPTION_WIDTH / 2 * c.r)
    band = rgb[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    if band.size == 0 or min(band.shape[:2]) < 8:
        return ""
    grey = cv2.cvtColor(band, cv2.COLOR_RGB2GRAY)
    if grey.shape[0] < 60:  # Tesseract reads letters of 20 px or more best
        grey = cv2.resize(grey, None, fx=60 / grey.shape[0], fy=60 / grey.shape[0], interpolation=cv2.INTER_CUBIC)
    text = pytesseract.image_to_string(grey, config="--psm 6")
    return " ".join(text.split())


def lot_of(caption: str) -> str:
    """A lot number read from a caption ("Lot 112", "No. 112", "112. Hadrian..."), or ""."""
    found = LOT.search(caption) or FIRST_NUMBER.search(caption)
    return found.group(1) if found else ""


def masked_crop(rgb: np.ndarray, c: Circle) -> np.ndarray:
    """The coin's square crop as RGBA, transparent outside the coin."""
    loc = CoinLocation(c, True, "split", 1.0)
    crop = crop_coin(rgb, loc, mask=False)
    side = crop.shape[0]
    alpha = np.zeros((side, side), np.uint8)
    cv2.circle(alpha, (side // 2, side // 2), int(round(c.r)), 255, -1, lineType=cv2.LINE_AA)
    return np.dstack([crop, alpha])


def sources_of(source: Path) -> list[tuple[Path, dict]]:
    """(file, the columns to carry) of a photo, a PDF, a folder of them, or a manifest (its ``image`` column)."""
    if source.is_dir():
        return [(p, {}) for p in image_files(source, IMAGE_SUFFIXES | {".pdf"})]
    if source.suffix.lower() == ".csv":
        from coinmatch.catalog.manifest import RESERVED, read_manifest

        return [(f.path, {k: v for k, v in e.metadata.items() if k not in RESERVED})
                for e in read_manifest(source, per_row=True) for f in e.faces]
    if not source.exists():
        raise CoinmatchError(f"{source}: not found")
    return [(source, {})]


def split(source: str | Path, out: str | Path, manifest: str | Path | None = None) -> tuple[Path, list[dict]]:
    """Every coin of ``source`` cropped into ``out`` with a manifest (default ``out/coins.csv``): the manifest's
    path and its rows."""
    source, out = Path(source), Path(out)
    manifest = Path(manifest) if manifest else out / "coins.csv"
    out.mkdir(parents=True, exist_ok=True)
    read_captions = tesseract_ready()
    if not read_captions:
        log.warning("Tesseract is not installed (Debian: apt-get install tesseract-ocr; pip install pytesseract): "
                    "captions are left empty")
    rows, extra = [], []
    for path, carried in sources_of(source):
        for page, rgb in pages(path):
            for n, c in enumerate(sorted(find_coins(rgb), key=lambda c: (round(c.y / (2 * c.r)), c.x)), 1):
                name = f"{path.stem}{'' if page is None else f'-p{page}'}-{n}"
                target = out / f"{name}.png"
                save_rgb(masked_crop(rgb, c), target)
                caption = caption_of(rgb, c) if read_captions else ""
                rows.append({"image": Path(_relative(target, manifest.parent)).as_posix(), "id": name,
                             "source": str(path), "page": "" if page is None else page, "x": round(c.x, 1),
                             "y": round(c.y, 1), "r": round(c.r, 1), "caption": caption, "lot": lot_of(caption),
                             **carried})
                extra += [k for k in carried if k not in extra and k not in COLUMNS]
    from coinmatch.files import replaced

    with replaced(manifest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS + extra)
        writer.writeheader()
        writer.writerows(rows)
    return manifest, rows


def _relative(path: Path, base: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), base.resolve())

"""One image made ready for a catalogue, everything but the network: the work of a build's worker processes.

Kept apart from :mod:`coinmatch.catalog.build` so that a worker imports OpenCV and the coin finder, not torch."""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from coinmatch import CoinmatchError
from coinmatch.images import load_rgb
from coinmatch.prepare import prepare_array
from coinmatch.quality import quality_warnings
from coinmatch.verify import extract_features_blob

THUMB_SIDE = 160
PR_SET_PDEATHSIG = 1  # prctl(2)


def thumbnail(crop: np.ndarray) -> np.ndarray:
    return cv2.resize(crop, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)


@dataclass
class PreparedFace:
    """One face made ready for the network by a worker: everything but its vectors."""

    crop: np.ndarray
    found: bool
    circle: tuple[float, float, float]
    warnings: list[str]
    thumbnail: np.ndarray
    features: tuple[str, bytes, bytes] | None
    keys: dict[str, str]  # the duplicate keys: kind -> key


def prepare_face(path: Path, features: bool) -> PreparedFace | CoinmatchError:
    """Decode, find the coin, crop, thumbnail, quality warnings, local features and duplicate keys of one image
    (the work of a build's worker processes); an unusable image gives its error instead."""
    from coinmatch.dedup import photo_hash, pixel_digest

    try:
        rgb = load_rgb(path, name=str(path))
        p = prepare_array(rgb, str(path))
    except CoinmatchError as exc:
        return exc
    c = p.location.circle
    return PreparedFace(p.crop, p.location.found, (c.x, c.y, c.r), p.notes + quality_warnings(p.crop, 2 * c.r),
                        thumbnail(p.crop), extract_features_blob(p.crop) if features else None,
                        {"an exact duplicate": "x" + pixel_digest(rgb), "a near duplicate": "p" + photo_hash(rgb)})


def worker_start(parent: int) -> None:
    """A worker dies with the build that started it, even one killed outright (Linux: the parent-death signal)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the worker ends when it next finds its queue gone
    if os.getppid() != parent:  # the build died before the signal was set
        os._exit(1)
    cv2.setNumThreads(1)  # one worker a core: OpenCV's own threads would only contend

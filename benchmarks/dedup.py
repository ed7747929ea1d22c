"""What tells a copy of a photograph from another photograph: `coinmatch dedup`'s two measures on real photos.

    .venv/bin/python benchmarks/dedup.py          # about a minute

Every fifth demo catalogue photo (12) copied in each kind tests/test_dedup.py plants (an exact copy, JPEG at
quality 40, half size, a quarter turn, turned 33 degrees, cropped 5 % a side, grey); the 24 demo coins' two
photographs; and each of the 60 catalogue photos against the other coins of its type (the most similar by each
measure). For each: the share of keypoints that agree under the fit, and the grey pixels' correlation, laid one on
the other; and how many pass both of dedup's thresholds.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from common import ROOT, save_results  # noqa: E402
from test_dedup import KINDS, planted  # noqa: E402

from coinmatch import dedup  # noqa: E402
from coinmatch import verify as verification  # noqa: E402
from coinmatch.images import load_rgb, save_rgb  # noqa: E402

DEMO = ROOT / "demo" / "data"


def measures(a: dedup.Photo, b: dedup.Photo) -> tuple[float, float]:
    fa, fb = verification.from_blob(*a.features), verification.from_blob(*b.features)
    v = verification.match(fa, fb)
    share = v.inliers / max(1, min(len(fa.keypoints), len(fb.keypoints)))
    if v.matrix is None:
        return share, 0.0
    side = verification.SIDE
    laid = cv2.warpAffine(a.grey.astype(np.float32), v.matrix, (side, side))
    covered = cv2.warpAffine(np.ones((side, side), np.float32), v.matrix, (side, side)) > 0.99
    inside = (dedup.coin_mask(side, radius_fraction=0.8) > 0) & covered
    x, y = laid[inside] - laid[inside].mean(), b.grey[inside].astype(np.float32) - b.grey[inside].mean()
    return share, float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum() + 1e-9))


def main() -> None:
    rows = list(csv.DictReader(open(DEMO / "catalogue.csv", encoding="utf-8")))
    queries = list(csv.DictReader(open(DEMO / "queries.csv", encoding="utf-8")))
    found: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in rows[::5]:
            rgb = load_rgb(DEMO / r["image"])
            original = dedup.examine("original", DEMO / r["image"])
            for kind in KINDS:
                path = Path(tmp) / f"{kind}.jpg"
                save_rgb(planted(rgb, kind), path, quality=92)
                found.setdefault(f"copy: {kind}", []).append(measures(original, dedup.examine(kind, path)))
    by_id = {r["id"]: r for r in rows}
    for q in queries:
        found.setdefault("the same coin, another photograph", []).append(
            measures(dedup.examine("a", DEMO / q["image"]), dedup.examine("b", DEMO / by_id[q["coin_id"]]["image"])))
    examined = {r["id"]: dedup.examine(r["id"], DEMO / r["image"]) for r in rows}
    for a in examined:
        pairs = [measures(examined[a], examined[b]) for b in examined
                 if b != a and by_id[b]["denomination"] == by_id[a]["denomination"]]
        found.setdefault("another coin of the type (most alike by share)", []).append(max(pairs))
        found.setdefault("another coin of the type (most alike by correlation)", []).append(
            max(pairs, key=lambda t: t[1]))
    out, lines = [], []
    for what, values in found.items():
        share, corr = np.array([v[0] for v in values]), np.array([v[1] for v in values])
        passing = float(np.mean((share >= dedup.MIN_SHARE) & (corr >= dedup.MIN_CORRELATION)))
        out.append({"what": what, "n": len(values), "share_min": float(share.min()), "share_max": float(share.max()),
                    "corr_min": float(corr.min()), "corr_max": float(corr.max()), "grouped": passing})
        lines.append(f"{what:<54} {len(values):>3}  share {share.min():.2f}-{share.max():.2f}  correlation "
                     f"{corr.min():.2f}-{corr.max():.2f}  grouped {passing:.2f}")
    text = (f"thresholds: share >= {dedup.MIN_SHARE}, correlation >= {dedup.MIN_CORRELATION}\n" + "\n".join(lines))
    print(text)
    save_results("dedup", out, text)


if __name__ == "__main__":
    main()

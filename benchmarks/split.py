"""`coinmatch split` measured: coins found (recall, precision, centre error) and lot numbers read.

    .venv/bin/python benchmarks/split.py          # about a minute; captions need Debian's tesseract-ocr

Four composed plates (tests/test_split.py: nine real demo coins each at known positions on grey halftone paper,
"Lot N" printed under each), and the euro pile photos whose coins are marked by hand in tests/test_split.py (the
other two pile photos: the count found only).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from common import EURO, ROOT, save_results  # noqa: E402
from test_split import PILES, R, matched, plate  # noqa: E402

from coinmatch.split import split, tesseract_ready  # noqa: E402


def main() -> None:
    rows, lines = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lots_right = lots = 0
        for seed, first in ((0, 101), (3, 201), (1, 301), (2, 401)):
            page, coins = plate(ROOT / "demo" / "data", first, seed)
            Image.fromarray(page).save(tmp / f"plate-{seed}.png")
            _, found = split(tmp / f"plate-{seed}.png", tmp / f"out-{seed}")
            circles = [(float(r["x"]), float(r["y"]), float(r["r"])) for r in found]
            recall, precision, error = matched(circles, [(x, y, R) for x, y, _ in coins])
            for x, y, lot in coins:
                read = next((r["lot"] for r in found if np.hypot(float(r["x"]) - x, float(r["y"]) - y) < R), "")
                lots += 1
                lots_right += read == lot
            rows.append({"what": f"plate {seed}", "coins": 9, "found": len(found), "recall": recall,
                         "precision": precision, "median_error_r": error})
        for name, marks in PILES.items():
            _, found = split(EURO / "photos" / f"{name}.jpg", tmp / name)
            recall, precision, error = matched([(float(r["x"]), float(r["y"]), float(r["r"])) for r in found], marks)
            rows.append({"what": name, "coins": len(marks), "found": len(found), "recall": recall,
                         "precision": precision, "median_error_r": error})
    for r in rows:
        lines.append(f"{r['what']:<10} coins {r['coins']:>3}  found {r['found']:>3}  recall {r['recall']:.3f}  "
                     f"precision {r['precision']:.3f}  median centre error {100 * r['median_error_r']:.2f} % of r")
    lines.append(f"lot numbers read: {lots_right} of {lots}" if tesseract_ready() else
                 "lot numbers: Tesseract not installed")
    text = "\n".join(lines)
    print(text)
    save_results("split", rows + [{"lots": lots, "lots_right": lots_right}], text)


if __name__ == "__main__":
    main()

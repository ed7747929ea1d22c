"""What refining the coin finder's circle costs: CPU time per photo, one thread, with and without it.

    .venv/bin/python benchmarks/finder_speed.py [--name finder-speed]

Times segment.locate_coin on the euro pairs (168 photos of about 300 px) and the Wikimedia photos (240, up to
several thousand px), with the refining passes (segment.REFINE_PASSES) and without them (Hough's circle as it won).
CPU time of this process (time.process_time) with OpenCV and OpenMP held to one thread, so that other work on the
machine counts for little; photos are decoded before timing. About 2 minutes.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

import cv2  # noqa: E402

from common import DATA, format_table, save_results  # noqa: E402
from coinmatch import segment  # noqa: E402
from coinmatch.images import load_rgb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="finder-speed", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    sets = {"euro pairs": sorted((DATA / "euro-coins" / "pairs").glob("*.jpg")),
            "Wikimedia": sorted((DATA / "ancient-coins" / "wikimedia").rglob("*.jpg"))}
    refined = segment.REFINE_PASSES
    rows = []
    for name, paths in sets.items():
        photos = [load_rgb(p) for p in paths]
        row = {"set": name, "photos": len(photos)}
        for label, passes in (("hough_ms", ()), ("refined_ms", refined)):
            segment.REFINE_PASSES = passes
            t = time.process_time()
            for rgb in photos:
                segment.locate_coin(rgb)
            row[label] = 1000 * (time.process_time() - t) / len(photos)
        segment.REFINE_PASSES = refined
        rows.append(row)
        print(row, flush=True)
    text = format_table(rows, [("set", "set", "<12"), ("photos", "photos", ">7"),
                               ("hough_ms", "Hough's circle, ms CPU", "23.1f"), ("refined_ms", "refined, ms CPU", "16.1f")])
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

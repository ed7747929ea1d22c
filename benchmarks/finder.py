"""Which circles a change of the coin finder moves, on every real photo set, and a sheet to look at.

    .venv/bin/python benchmarks/finder.py [--change leave|outer] [--leave 0.15] [--ocre 1500] [--name finder-CHANGE]

Two changes can be compared with the finder as it is: ``leave``, the frame limit (a coin may leave the frame by
``segment.MAX_LEAVE`` of its radius; compared with ``--leave``, 0.15 before), and ``outer``, the search for the
outer ring of a bimetallic coin about a circle that won (compared with the finder without it). There is no ground
truth for the circles, so this finds every photo whose circle moves (centre or radius by more than 5 % of the
radius) and draws both circles on it, the finder without the change in red and as it is in green, on a sheet a
person checks by eye (out/benchmarks/finder-CHANGE.png, numbered as in the results file). Photo sets: the euro
pairs, the pair-denominations crops, the euro singles, the Wikimedia photos and ``--ocre`` OCRE images drawn at
random (seed 0; 0 for none). It also times the finder as it is, per photo.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from common import DATA, WORK, format_table, save_results
from coinmatch import segment
from coinmatch.images import load_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
TILE = 160


def photo_sets(ocre: int) -> dict[str, list[Path]]:
    def images(folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)

    euro, ancient = DATA / "euro-coins", DATA / "ancient-coins"
    sets = {"euro pairs": images(euro / "pairs"), "euro pair-denominations": images(euro / "pair-denominations"),
            "euro singles": images(euro / "singles"), "Wikimedia": images(ancient / "wikimedia")}
    if ocre:
        every = images(ancient / "ocre")
        pick = np.random.default_rng(0).choice(len(every), size=min(ocre, len(every)), replace=False)
        sets["OCRE sample"] = [every[i] for i in sorted(pick)]
    return sets


def locate_without(rgb: np.ndarray, change: str, leave: float) -> segment.CoinLocation:
    """The finder as it was before ``change``."""
    kept = segment.MAX_LEAVE, segment._outer_ring
    if change == "leave":
        segment.MAX_LEAVE = leave
    else:
        segment._outer_ring = lambda *_: None
    try:
        return segment.locate_coin(rgb)
    finally:
        segment.MAX_LEAVE, segment._outer_ring = kept


def moved(a: segment.CoinLocation, b: segment.CoinLocation) -> bool:
    ca, cb = a.circle, b.circle
    return a.method != b.method or max(abs(ca.x - cb.x), abs(ca.y - cb.y), abs(ca.r - cb.r)) > 0.05 * max(ca.r, cb.r)


def sheet(changed: list[tuple[Path, np.ndarray, segment.CoinLocation, segment.CoinLocation]], out: Path) -> None:
    cols = 8
    grid = np.full((max(1, -(-len(changed) // cols)) * TILE, cols * TILE, 3), 255, np.uint8)
    for k, (_, rgb, a, b) in enumerate(changed):
        h, w = rgb.shape[:2]
        s = (TILE - 4) / max(h, w)
        tile = np.ascontiguousarray(cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                                               interpolation=cv2.INTER_AREA))
        for loc, colour in ((a, (255, 0, 0)), (b, (0, 200, 0))):
            c = loc.circle
            cv2.circle(tile, (round(c.x * s), round(c.y * s)), round(c.r * s), colour, 1, lineType=cv2.LINE_AA)
        cv2.putText(tile, str(k), (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
        y, x = (k // cols) * TILE, (k % cols) * TILE
        grid[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--change", choices=["leave", "outer"], default="outer", help="the change looked at")
    ap.add_argument("--leave", type=float, default=0.15, help="with --change leave: the frame limit before")
    ap.add_argument("--ocre", type=int, default=1500, help="OCRE images sampled (seed 0); 0 for none")
    ap.add_argument("--name", default=None, help="results file name in benchmarks/results/ (finder-CHANGE)")
    args = ap.parse_args()
    name = args.name or f"finder-{args.change}"
    rows, changed = [], []
    for set_name, paths in photo_sets(args.ocre).items():
        seconds, n_moved = 0.0, 0
        for path in paths:
            rgb = load_rgb(path)
            a = locate_without(rgb, args.change, args.leave)
            t = time.perf_counter()
            b = segment.locate_coin(rgb)
            seconds += time.perf_counter() - t
            if moved(a, b):
                n_moved += 1
                changed.append((path, rgb, a, b))
        rows.append({"set": set_name, "photos": len(paths), "moved": n_moved,
                     "ms_per_photo": 1000 * seconds / max(1, len(paths))})
        print(f"{set_name}: {n_moved} of {len(paths)} circles moved", flush=True)
    out = WORK / f"{name}.png"
    sheet(changed, out)
    listing = "\n".join(f"{k:3d} {p.relative_to(DATA)}: {a.method} r={a.circle.r:.0f} -> {b.method} "
                        f"r={b.circle.r:.0f}" for k, (p, _, a, b) in enumerate(changed))
    before = (f"frame limit {args.leave:g} of the radius" if args.change == "leave"
              else "no search for a bimetallic coin's outer ring")
    text = (f"red: {before}; green: the finder as it is (frame limit {segment.MAX_LEAVE:g}, outer ring search)\n"
            + format_table(rows, [("set", "set", "<24"), ("photos", "photos", ">7"), ("moved", "moved", ">6"),
                                  ("ms_per_photo", "ms/photo", "9.1f")])
            + f"\n\nmoved circles (drawn on {out.relative_to(WORK.parent.parent)}):\n{listing}")
    print(text)
    save_results(name, [{**r} for r in rows] + [{"moved": str(p.relative_to(DATA)), "from": a.circle.__dict__,
                                                      "to": b.circle.__dict__} for p, _, a, b in changed], text)


if __name__ == "__main__":
    main()

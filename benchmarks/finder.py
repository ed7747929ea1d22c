"""Which circles a change of the coin finder moves, on every real photo set, and a sheet to look at.

    .venv/bin/python benchmarks/finder.py [--change leave|outer|refine] [--leave 0.15] [--ocre 1500] [--name finder-CHANGE]

Three changes can be compared with the finder as it is: ``leave``, the frame limit (a coin may leave the frame by
``segment.MAX_LEAVE`` of its radius; compared with ``--leave``, 0.15 before), ``outer``, the search for the
outer ring of a bimetallic coin about a circle that won (compared with the finder without it), and ``refine``,
the refinement of the winning circle onto the rim (compared with Hough's circle as it won). There is no ground
truth for the circles, so this finds every photo whose circle moves (centre or radius by more than 5 % of the
radius) and draws both circles on it, the finder without the change in red and as it is in green, on a sheet a
person checks by eye (out/benchmarks/finder-CHANGE.png, numbered as in the results file). Photo sets: the euro
pairs, the pair-denominations crops, the euro singles, the Wikimedia photos and ``--ocre`` OCRE images drawn at
random (seed 0; 0 for none). It also times the finder as it is, per photo.

Steadiness, with and without the change: a finder that sees the same coin should find the same circle. On the euro
pairs and the Wikimedia photos, each photo is also made grey, turned by a random angle (seed 0; edges replicated)
and shrunk to 128 px (evaluation.protocol's catalogue-like parts), and it counts the photos whose circle on the copy,
mapped back to the photo, differs from the photo's own by more than 1 % and 3 % of the radius (centre or radius).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import astuple
from pathlib import Path

import cv2
import numpy as np

from common import DATA, WORK, format_table, save_results
from coinmatch import segment
from coinmatch.evaluation.protocol import grey, rotate, shrink
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
    kept = segment.MAX_LEAVE, segment._outer_ring, segment.REFINE_PASSES
    if change == "leave":
        segment.MAX_LEAVE = leave
    elif change == "outer":
        segment._outer_ring = lambda *_: None
    else:
        segment.REFINE_PASSES = ()
    try:
        return segment.locate_coin(rgb)
    finally:
        segment.MAX_LEAVE, segment._outer_ring, segment.REFINE_PASSES = kept


STEADY_COPIES = ("grey", "turned", "shrunk")


def offsets(rgb: np.ndarray, locate, rng: np.random.Generator) -> dict[str, float]:
    """How far the circle ``locate`` finds on each copy of ``rgb`` (STEADY_COPIES), mapped back onto the photo, lies
    from the one it finds on the photo: the largest of the centre's and the radius's shifts, in radii."""
    h, w = rgb.shape[:2]
    base = locate(rgb).circle
    angle = float(rng.uniform(0, 360))
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    small = shrink(rgb)
    k = w / small.shape[1]
    x, y = turn @ np.array([base.x, base.y, 1.0])
    seen = {"grey": (locate(grey(rgb)).circle, base),
            "turned": (locate(rotate(rgb, angle)).circle, segment.Circle(x, y, base.r)),
            "shrunk": (segment.Circle(*(k * np.array(astuple(locate(small).circle)))), base)}
    return {name: max(abs(c.x - b.x), abs(c.y - b.y), abs(c.r - b.r)) / b.r for name, (c, b) in seen.items()}


def steadiness(set_name: str, paths: list[Path], change: str, leave: float) -> list[dict]:
    rows = []
    for label, locate in (("without the change", lambda rgb: locate_without(rgb, change, leave)),
                          ("as it is", segment.locate_coin)):
        rng = np.random.default_rng(0)
        found = np.array([[o[n] for n in STEADY_COPIES] for o in (offsets(load_rgb(p), locate, rng) for p in paths)])
        for i, copy in enumerate(STEADY_COPIES):
            rows.append({"set": set_name, "finder": label, "copy": copy, "photos": len(paths),
                         "over_1": int((found[:, i] > 0.01).sum()), "over_3": int((found[:, i] > 0.03).sum()),
                         "median": float(np.median(found[:, i]))})
    return rows


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
    ap.add_argument("--change", choices=["leave", "outer", "refine"], default="outer", help="the change looked at")
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
    steady = []
    for set_name in ("euro pairs", "Wikimedia"):
        steady += steadiness(set_name, photo_sets(0)[set_name], args.change, args.leave)
    out = WORK / f"{name}.png"
    sheet(changed, out)
    listing = "\n".join(f"{k:3d} {p.relative_to(DATA)}: {a.method} r={a.circle.r:.0f} -> {b.method} "
                        f"r={b.circle.r:.0f}" for k, (p, _, a, b) in enumerate(changed))
    before = {"leave": f"frame limit {args.leave:g} of the radius", "outer": "no search for a bimetallic coin's outer ring",
              "refine": "Hough's circle, not refined"}[args.change]
    text = (f"red: {before}; green: the finder as it is (frame limit {segment.MAX_LEAVE:g}, outer ring search, "
            f"{len(segment.REFINE_PASSES)} refining passes)\n"
            + format_table(rows, [("set", "set", "<24"), ("photos", "photos", ">7"), ("moved", "moved", ">6"),
                                  ("ms_per_photo", "ms/photo", "9.1f")])
            + "\n\nsteadiness: photos whose circle on a copy lies more than 1 % / 3 % of the radius from the photo's own\n"
            + format_table(steady, [("set", "set", "<12"), ("finder", "finder", "<20"), ("copy", "copy", "<8"),
                                    ("photos", "photos", ">7"), ("over_1", "> 1 %", ">6"), ("over_3", "> 3 %", ">6"),
                                    ("median", "median", "8.4f")])
            + f"\n\nmoved circles (drawn on {out.relative_to(WORK.parent.parent)}):\n{listing}")
    print(text)
    save_results(name, [{**r} for r in rows] + steady + [{"moved": str(p.relative_to(DATA)), "from": a.circle.__dict__,
                                                      "to": b.circle.__dict__} for p, _, a, b in changed], text)


if __name__ == "__main__":
    main()

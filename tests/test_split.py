"""Coins cut out of plates, piles and PDFs (`coinmatch split`, `catalog build --split`): real coins placed at known
positions on a printed-paper plate with printed lot captions (also as a PDF of two pages), and real photos of piles
whose coins were marked by hand."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import demo_rows
from coinmatch.images import load_rgb
from coinmatch.segment import locate_coin
from coinmatch.split import lot_of, split, tesseract_ready

R = 90  # each coin's radius on the plate, px
PILES = {  # hand-marked coins (x, y, r in the photo's pixels), checked on the photo by eye
    "IMG_4193": [(1274, 334, 96), (553, 484, 99), (604, 703, 98), (1005, 359, 97), (817, 631, 97), (812, 884, 96),
                 (1204, 971, 94), (1115, 722, 96)],  # the two coins cut by the left edge are not counted
    "IMG_4199": [(927, 865, 72), (798, 328, 72), (389, 701, 75), (761, 1003, 73), (661, 275, 73), (473, 922, 74),
                 (765, 810, 73), (755, 664, 72), (1218, 384, 72), (1269, 719, 71), (570, 389, 73), (609, 683, 73),
                 (573, 1041, 72), (598, 536, 73), (1069, 835, 71), (1085, 304, 71), (1016, 611, 71), (933, 493, 70),
                 (1155, 585, 69), (1243, 1093, 70), (769, 176, 62), (712, 448, 72), (941, 312, 69), (1120, 72, 60)],
}


def plate(demo_dir: Path, first_lot: int, seed: int) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Nine real coins on grey printed paper (a halftone dot screen and noise), 3 x 3, each with "Lot N" printed
    under it: the plate and its coins' (x, y, lot)."""
    rng = np.random.default_rng(seed)
    paper = np.full((1000, 960), 214, np.float32) + rng.normal(0, 4, (1000, 960))
    paper[::6, ::6] -= 40  # the halftone screen of a printed page
    page = np.dstack([np.clip(paper, 0, 255).astype(np.uint8)] * 3)
    coins = []
    rows = demo_rows("catalogue.csv")
    for k in range(9):
        rgb = load_rgb(demo_dir / rows[(k * 7 + seed) % len(rows)]["image"])
        c = locate_coin(rgb).circle
        s = R / c.r
        small = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        cx, cy = 170 + 310 * (k % 3), 150 + 320 * (k // 3)
        yy, xx = np.mgrid[-R:R, -R:R]
        inside = xx ** 2 + yy ** 2 <= (R - 1) ** 2
        sx, sy = int(round(c.x * s)), int(round(c.y * s))
        patch = small[sy - R:sy + R, sx - R:sx + R]
        target = page[cy - R:cy + R, cx - R:cx + R]
        target[inside[:patch.shape[0], :patch.shape[1]]] = patch[inside[:patch.shape[0], :patch.shape[1]]]
        lot = str(first_lot + k)
        cv2.putText(page, f"Lot {lot}", (cx - 60, cy + R + 45), cv2.FONT_HERSHEY_DUPLEX, 1.1, (20, 20, 20), 2,
                    cv2.LINE_AA)
        coins.append((cx, cy, lot))
    return page, coins


def matched(found: list[tuple[float, float, float]], truth: list[tuple[float, float, float]]):
    """(recall, precision, median centre error over the radius) with a hit within a quarter radius."""
    hits = [min(((np.hypot(fx - x, fy - y) / r), i) for i, (fx, fy, _) in enumerate(found)) if found else (9, -1)
            for x, y, r in truth]
    recall = np.mean([d <= 0.25 for d, _ in hits])
    used = {i for d, i in hits if d <= 0.25}
    return recall, len(used) / max(1, len(found)), float(np.median([d for d, _ in hits]))


def test_a_composed_plate_and_its_pdf(demo_dir, tmp_path, caplog):
    first, coins_a = plate(demo_dir, 101, 0)
    second, coins_b = plate(demo_dir, 201, 3)
    Image.fromarray(first).save(tmp_path / "plate.png")
    Image.fromarray(first).save(tmp_path / "sale.pdf", save_all=True, append_images=[Image.fromarray(second)],
                                resolution=200)
    with caplog.at_level(logging.WARNING):
        manifest, rows = split(tmp_path / "plate.png", tmp_path / "coins")
    found = [(float(r["x"]), float(r["y"]), float(r["r"])) for r in rows]
    recall, precision, error = matched(found, [(x, y, R) for x, y, _ in coins_a])
    assert recall == 1.0 and precision == 1.0 and error < 0.05
    assert all(abs(r - R) < 0.1 * R for _, _, r in found)
    crop = np.asarray(Image.open(tmp_path / "coins" / rows[0]["image"]))
    assert crop.shape[2] == 4 and crop[0, 0, 3] == 0 and crop[crop.shape[0] // 2, crop.shape[1] // 2, 3] == 255
    if tesseract_ready():
        lots = {lot: next((r["lot"] for r in rows if np.hypot(float(r["x"]) - x, float(r["y"]) - y) < R), "")
                for x, y, lot in coins_a}
        assert sum(found == lot for lot, found in lots.items()) >= 8, lots  # 9 printed lot numbers
    else:
        assert any("Tesseract is not installed" in r.getMessage() for r in caplog.records)
        assert all(r["caption"] == "" for r in rows)
    # the same plate and another as the two pages of a scanned catalogue
    _, pdf_rows = split(tmp_path / "sale.pdf", tmp_path / "pdf")
    assert sorted({r["page"] for r in pdf_rows}) == [1, 2] and len(pdf_rows) == 18
    scale = 200 / 200  # rasterised at the resolution the PDF was written at: the plate's own pixels
    page1 = [(float(r["x"]) / scale, float(r["y"]) / scale, float(r["r"])) for r in pdf_rows if r["page"] == 1]
    assert matched(page1, [(x, y, R) for x, y, _ in coins_a])[0] == 1.0


def test_pile_photos_marked_by_hand(shared_dir, tmp_path):
    for name, marks in PILES.items():
        _, rows = split(shared_dir / "euro-coins" / "photos" / f"{name}.jpg", tmp_path / name)
        found = [(float(r["x"]), float(r["y"]), float(r["r"])) for r in rows]
        recall, precision, error = matched(found, marks)
        assert recall == 1.0 and precision >= 0.9 and error < 0.1, (name, recall, precision, error)


def test_lot_numbers_from_captions():
    assert [lot_of(c) for c in ("Lot 112", "No. 7 Hadrian, denarius", "112. Trajan", "lot112", "RIC II 207",
                                "")] == ["112", "7", "112", "112", "", ""]


def test_catalog_build_split_makes_one_entry_a_coin(demo_dir, tmp_path):
    page, coins = plate(demo_dir, 301, 1)
    Image.fromarray(page).save(tmp_path / "plate.png")
    (tmp_path / "plates.csv").write_text("image,auction,date\nplate.png,Example Auctions 5,12 May 1987\n")
    binary = str(Path(sys.executable).with_name("coinmatch"))
    run = subprocess.run([binary, "catalog", "build", str(tmp_path / "cat"), str(tmp_path / "plates.csv"), "--split",
                          "--no-features", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    from coinmatch import Catalogue

    with Catalogue.open(tmp_path / "cat") as cat:
        total, entries = cat.entries()
        assert total == 9
        record = entries[0]["metadata"]
        assert record["auction"] == "Example Auctions 5" and record["date"] == "12 May 1987"
        assert record["source"].endswith("plate.png") and float(record["r"]) > 0
    rows = list(csv.DictReader(open(tmp_path / "cat.coins" / "coins.csv", encoding="utf-8")))
    assert len(rows) == 9 and (tmp_path / "cat.coins" / rows[0]["image"]).is_file()

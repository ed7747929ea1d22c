"""Duplicates (`coinmatch dedup`): copies of real photos planted in every kind the README names, found and grouped;
real distinct coins of one type (one die) never grouped; the clean manifest, the contact sheets; and the same keys
in a catalogue build, which warns about the duplicates it is given."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import demo_rows, write_manifest
from coinmatch.images import load_rgb, save_rgb

KINDS = ("exact", "jpeg", "half", "quarter-turn", "turned", "cropped", "grey")


def planted(rgb: np.ndarray, kind: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 40])
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if kind == "half":
        return cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    if kind == "quarter-turn":
        return np.ascontiguousarray(np.rot90(rgb))
    if kind == "turned":
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 33, 1.0)
        return cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if kind == "cropped":
        return np.ascontiguousarray(rgb[h // 20: h - h // 20, w // 20: w - w // 20])
    if kind == "grey":
        return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return rgb


@pytest.fixture(scope="module")
def planted_folder(tmp_path_factory, demo_dir) -> tuple[Path, dict[str, str]]:
    """Four real photos each copied in every kind (an exact copy as PNG: the same pixels, another format), among 16
    other real coins of the same two types; name -> the original it copies (originals map to themselves)."""
    folder = tmp_path_factory.mktemp("dedup") / "photos"
    folder.mkdir()
    rows = demo_rows("catalogue.csv")
    originals = [rows[i] for i in (0, 5, 30, 50)]
    others = [r for r in rows if r not in originals][:16]
    truth = {}
    for r in others:
        name = Path(r["image"]).name
        (folder / name).write_bytes((demo_dir / r["image"]).read_bytes())
    for r in originals:
        rgb = load_rgb(demo_dir / r["image"])
        name = Path(r["image"]).name
        (folder / name).write_bytes((demo_dir / r["image"]).read_bytes())
        truth[name] = name
        for kind in KINDS:
            copy = f"{Path(name).stem}-{kind}.{'png' if kind == 'exact' else 'jpg'}"
            save_rgb(planted(rgb, kind), folder / copy, quality=92)
            truth[copy] = name
    return folder, truth


def test_planted_copies_are_found_and_distinct_coins_of_one_type_are_not(planted_folder, tmp_path):
    folder, truth = planted_folder
    binary = str(Path(sys.executable).with_name("coinmatch"))
    run = subprocess.run([binary, "dedup", str(folder), "--out", str(tmp_path / "groups.csv"), "--clean",
                          str(tmp_path / "clean.csv"), "--sheet", str(tmp_path / "sheets")], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(open(tmp_path / "groups.csv", encoding="utf-8")))
    groups: dict[str, dict[str, str]] = {}
    for r in rows:
        groups.setdefault(r["group"], {})[r["image"]] = r["kind"]
    found = sorted(sorted(g) for g in groups.values())
    expected = sorted(sorted(n for n, o in truth.items() if o == original) for original in set(truth.values()))
    assert found == expected  # every copy with its original, nothing else: the 16 other coins are in no group
    for g in groups.values():
        original = next(n for n in g if truth[n] == n)
        exact = f"{Path(original).stem}-exact.png"
        assert g[original] == g[exact] == "exact" and all(k == "near" for n, k in g.items() if n not in (original, exact))
    kept = [r["image"] for r in csv.DictReader(open(tmp_path / "clean.csv", encoding="utf-8"))]
    assert len(kept) == 16 + 4 and all((tmp_path / k).is_file() for k in kept)
    assert {Path(k).name for k in kept} >= set(truth.values()) - {n for n in truth if "-" in n}  # the largest kept
    assert len(list((tmp_path / "sheets").glob("group-*.png"))) == 4


def test_a_clean_manifest_keeps_its_columns_and_paths(planted_folder, tmp_path):
    from coinmatch.dedup import find_duplicates, write_outputs

    folder, truth = planted_folder
    manifest = write_manifest(folder.parent / "m.csv", [{"image": f"photos/{n}", "id": n, "note": "x"} for n in
                                                         sorted(p.name for p in folder.iterdir())])
    dups = find_duplicates([(f"photos/{n}", folder / n) for n in sorted(p.name for p in folder.iterdir())])
    (tmp_path / "elsewhere").mkdir()
    write_outputs(dups, manifest, tmp_path / "g.csv", tmp_path / "elsewhere" / "clean.csv")
    rows = list(csv.DictReader(open(tmp_path / "elsewhere" / "clean.csv", encoding="utf-8")))
    assert list(rows[0]) == ["image", "id", "note"] and len(rows) == 20
    assert all((tmp_path / "elsewhere" / r["image"]).resolve().is_file() for r in rows)


def test_two_photos_of_one_die_stay_apart(demo_dir, tmp_path):
    """The hardest real case at hand: two Finnish 10 cent coins struck from one die, each photographed twice."""
    from coinmatch.dedup import find_duplicates

    shared = demo_dir.parents[1].parent / "shared" / "data" / "euro-coins" / "pairs"
    names = ["10c-4191-036_a.jpg", "10c-4191-037_a.jpg", "10c-4191-036_b.jpg", "10c-4191-037_b.jpg"]
    if not all((shared / n).is_file() for n in names):
        pytest.skip("../shared/data/euro-coins is not beside this checkout")
    dups = find_duplicates([(n, shared / n) for n in names])
    for group in dups.groups:  # a coin's own two shots may group (near-identical photographs); two coins never
        assert len({dups.photos[i].name[:12] for i, _ in group}) == 1


def test_a_build_warns_about_the_duplicates_it_is_given(tmp_path, demo_dir, caplog):
    from coinmatch.catalog.build import build_catalogue

    rows = demo_rows("catalogue.csv")[:4]
    rgb = load_rgb(demo_dir / rows[0]["image"])
    save_rgb(rgb, tmp_path / "copy.png")  # the same pixels as another file
    manifest = write_manifest(tmp_path / "m.csv", [{"image": str(demo_dir / r["image"]), "id": r["id"]} for r in rows]
                              + [{"image": str(tmp_path / "copy.png"), "id": "copy"}])
    with caplog.at_level(logging.WARNING):
        build_catalogue(tmp_path / "cat", manifest, progress=False, features=False)
    warned = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(warned) == 1 and "copy.png" in warned[0] and rows[0]["image"].split("/")[-1] in warned[0]


def test_the_largest_copy_is_kept_even_past_the_loaders_shrink(tmp_path, demo_dir):
    from coinmatch.dedup import find_duplicates

    rgb = load_rgb(demo_dir / demo_rows("catalogue.csv")[0]["image"])
    save_rgb(cv2.resize(rgb, (2600, 2600), interpolation=cv2.INTER_CUBIC), tmp_path / "a-big.png")
    save_rgb(cv2.resize(rgb, (4400, 4400), interpolation=cv2.INTER_CUBIC), tmp_path / "b-bigger.png")
    dups = find_duplicates([(n, tmp_path / n) for n in ("a-big.png", "b-bigger.png")])
    assert [dups.photos[i].name for i, _ in dups.groups[0]] == ["b-bigger.png", "a-big.png"]
    assert dups.dropped() == {"a-big.png"}

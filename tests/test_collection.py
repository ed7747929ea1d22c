"""A whole collection matched: faces paired by name, zips read safely, sale dates, provenance chains across two
sales of real photos, the CSV and HTML report, and `coinmatch match` as a real process."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from coinmatch import CoinmatchError
from coinmatch.collection import (Photo, DEFAULT_VERIFIED_THRESHOLD, match_collection, pair_faces, read_collection,
                                  read_zip, sale_date)


def test_faces_pair_by_name_and_other_photos_stay_coins():
    names = ["a/coin12_obv.jpg", "a/coin12_rev.jpg", "coin 7 - Obverse.png", "coin 7 - Reverse.png", "x_a.jpg",
             "x_b.jpg", "lone_front.jpg", "dup_obv.jpg", "dup_obv.jpeg"]
    coins = {c.name: c for c in pair_faces(Photo(n, b"") for n in names)}
    assert set(coins["a/coin12"].faces) == {"obverse", "reverse"}
    assert coins["a/coin12"].faces["reverse"].name == "a/coin12_rev.jpg"
    assert set(coins["coin 7"].faces) == {"obverse", "reverse"}
    assert set(coins["x_a"].faces) == {None} and set(coins["x_b"].faces) == {None}  # _a/_b are two photos, not faces
    assert set(coins["lone"].faces) == {"obverse"}
    assert set(coins["dup"].faces) == {"obverse"} and set(coins["dup (2)"].faces) == {"obverse"}  # two obverses
    assert len(coins) == 7


@pytest.mark.parametrize("text, expected", [
    ("1987-05-12", (1987, 5, 12)), ("12 May 1987", (1987, 5, 12)), ("May 12, 1987", (1987, 5, 12)),
    ("12.05.1987", (1987, 5, 12)), ("May 1987", (1987, 5, 0)), ("1987", (1987, 0, 0)), ("c. 1890", (1890, 0, 0)),
    ("", None), ("spring sale", None), ("12 Mai 1987x", None)])
def test_sale_dates_in_common_forms(text, expected):
    assert sale_date(text) == expected


def test_zip_of_photos_is_read_in_memory_within_limits(tmp_path, sold_photos):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../etc/evil_obv.jpg", sold_photos["both"][0].read_bytes())  # a name is a label, not a path
        z.writestr("coins/evil_rev.jpg", sold_photos["both"][1].read_bytes())
        z.writestr("__MACOSX/._evil_obv.jpg", b"junk")
        z.writestr("notes.txt", b"not a photo")
    photos = read_zip(buf.getvalue(), "upload.zip")
    assert sorted(p.name for p in photos) == ["../../etc/evil_obv.jpg", "coins/evil_rev.jpg"]
    assert not (tmp_path.parent / "etc").exists()
    with pytest.raises(CoinmatchError, match="upload.zip: not a readable zip"):
        read_zip(b"PK\x03\x04 truncated", "upload.zip")
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("readme.txt", b"x")
    with pytest.raises(CoinmatchError, match="no image files"):
        read_zip(empty.getvalue(), "empty.zip")


def test_zip_member_larger_than_its_header_says_is_refused(sold_photos):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.jpg", sold_photos["both"][0].read_bytes())
    data = bytearray(buf.getvalue())
    size = len(sold_photos["both"][0].read_bytes())
    # understate the uncompressed size in the central directory (a zip bomb's trick)
    at = data.rfind(b"PK\x01\x02")
    data[at + 24:at + 28] = (size // 2).to_bytes(4, "little")
    with pytest.raises(CoinmatchError, match="larger than the archive says|cannot be read"):
        read_zip(bytes(data), "lying.zip")


def test_a_collection_folder_manifest_and_single_photo(tmp_path, sold_photos):
    folder = tmp_path / "coll"
    folder.mkdir()
    for i, p in enumerate(sold_photos["both"][:2]):
        (folder / f"c{i}_obv.jpg").write_bytes(p.read_bytes())
    (folder / ".hidden.jpg").write_bytes(b"x")
    (folder / "notes.txt").write_text("x")
    assert [sorted(c.faces) for c in read_collection(folder)] == [["obverse"], ["obverse"]]
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"obverse,reverse,id,owner\n{sold_photos['both'][0]},{sold_photos['both'][1]},m1,museum\n")
    [coin] = read_collection(manifest)
    assert coin.name == "m1" and set(coin.faces) == {"obverse", "reverse"} and coin.metadata == {"owner": "museum"}
    assert len(read_collection(sold_photos["none"][0])) == 1
    with pytest.raises(CoinmatchError, match="not found"):
        read_collection(tmp_path / "missing")


@pytest.fixture(scope="module")
def matched(sales, sold_photos):
    from coinmatch import Catalogue

    cats = {name: Catalogue.open(path) for name, path in sales.items()}
    photos = [Photo(p.name, p) for kind in ("both", "one", "none") for p in sold_photos[kind][:3]]
    photos.append(Photo("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg"))
    progress = []
    results = match_collection(cats, pair_faces(photos), on_progress=lambda d, t: progress.append((d, t)))
    yield cats, results, progress
    for c in cats.values():
        c.close()


def test_provenance_chains_across_two_sales_of_real_photos(matched):
    cats, results, progress = matched
    assert progress[-1] == (10, 10) and len(results) == 10
    by_name = {r.coin.name: r for r in results}
    for r in results[:3]:  # coins sold in both sales: the chain is the two entries, the older sale first
        coin_id = r.coin.name.removesuffix("_b")
        assert [(a.catalogue, a.match.id, a.date) for a in r.chain] == [
            ("sale-1975", f"B-{coin_id}", "1975"), ("sale-1987", coin_id, "12 May 1987")]
        assert r.decision == "match" and all(a.match.verified_score >= DEFAULT_VERIFIED_THRESHOLD for a in r.chain)
    for r in results[3:6]:  # in one sale only
        assert [a.match.id for a in r.chain] == [r.coin.name.removesuffix("_b")] and r.decision == "match"
    for r in results[6:9]:  # in neither: the best wrong candidate is too far to join a chain
        assert r.chain == [] and r.decision == "no_match"
        assert r.best[1].verified_score < DEFAULT_VERIFIED_THRESHOLD
    broken = by_name["broken"]
    assert broken.error and "broken.jpg" in broken.error and broken.results == {} and broken.decision is None


def test_report_csv_and_self_contained_html(matched, tmp_path):
    from coinmatch.report import write_report

    cats, results, _ = matched
    paths = write_report(results, cats, tmp_path / "report", {"verify": True, "top_k": 5}, "2026-12-04 10:00:00")
    rows = list(csv.DictReader(open(paths["csv"], encoding="utf-8")))
    assert [r["coin"] for r in rows] == [r.coin.name for r in results]
    first = rows[0]
    assert first["decision"] == "match" and float(first["verified_score"]) >= DEFAULT_VERIFIED_THRESHOLD
    assert first["chain"].startswith("sale-1975:B-") and "(12 May 1987)" in first["chain"]
    assert first["auction"] in ("Other House", "Example Auctions") and first["lot"]  # the record's own columns
    assert rows[-1]["error"] and not rows[-1]["match"]
    html = paths["html"].read_text(encoding="utf-8")
    for cat in cats.values():
        assert cat.info()["model_fingerprint"] in html
    assert "2026-12-04 10:00:00" in html and "Provenance chain" in html and "broken.jpg" in html
    assert "not calibrated: an entry is taken to be the coin at a verified score of 1.20 or more" in html
    assert not re.search(r"""(src|href)=["']https?://""", html)  # every image inline: one file to archive
    assert html.count("data:image/jpeg;base64,") >= 9 + 9  # each photo and each best match
    assert html.index("1975") < html.index("12 May 1987")


def test_match_cli_writes_the_report(sales, sold_photos, tmp_path):
    folder = tmp_path / "coll"
    folder.mkdir()
    for p in sold_photos["both"][:2] + sold_photos["none"][:1]:
        (folder / p.name).write_bytes(p.read_bytes())
    binary = str(Path(sys.executable).with_name("coinmatch"))
    run = subprocess.run([binary, "match", str(sales["sale-1987"]), str(folder), "--catalogue",
                          f"older={sales['sale-1975']}", "--out", str(tmp_path / "out"), "--json"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["coins"] == 3 and summary["matched"] == 2 and summary["unreadable"] == 0
    rows = list(csv.DictReader(open(summary["csv"], encoding="utf-8")))
    assert [r["chain"].split(" > ")[0].split(":")[0] for r in rows[:2]] == ["older", "older"]
    bad = subprocess.run([binary, "match", str(sales["sale-1987"]), str(folder), "--catalogue", "nonsense",
                          "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "NAME=DIR" in bad.stderr

"""Provenance chains inside and across catalogues (`coinmatch link`), on real photos: two catalogues laid out as two
sales of the same coins, one catalogue that holds each of some coins twice, the hold-together rule, the files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import demo_rows, write_manifest
from coinmatch import Catalogue, CoinmatchError
from coinmatch.link import Link, Node, _groups, link_catalogues


@pytest.fixture(scope="module")
def twice(tmp_path_factory, demo_dir) -> Path:
    """One catalogue that holds 8 coins twice (their two real photos, sold in 1990 and 2001) and 16 other coins."""
    from coinmatch.catalog.build import build_catalogue

    queries = demo_rows("queries.csv")[:8]
    sold = {q["coin_id"] for q in queries}
    rows = [{"image": str(demo_dir / q["image"]), "id": f"{q['coin_id']}-2001", "date": "3 March 2001"}
            for q in queries]
    for r in demo_rows("catalogue.csv"):
        if r["id"] in sold:
            rows.append({"image": str(demo_dir / r["image"]), "id": f"{r['id']}-1990", "date": "1990-06-01"})
    rows += [{"image": str(demo_dir / r["image"]), "id": r["id"], "date": ""}
             for r in demo_rows("catalogue.csv") if r["id"] not in {q["coin_id"] for q in demo_rows("queries.csv")}][:16]
    root = tmp_path_factory.mktemp("twice")
    build_catalogue(root / "archive", write_manifest(root / "archive.csv", rows), progress=False)
    return root / "archive"


def test_each_coin_held_twice_is_one_chain_oldest_first_and_no_other_coin_joins(twice):
    with Catalogue.open(twice) as cat:
        progress = []
        linked = link_catalogues({"archive": cat}, on_progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (32, 32) and linked.entries == 32 and linked.entries_per_s > 0
    chains = sorted([[a.node.entry for a in chain] for chain in linked.groups])
    coins = sorted(q["coin_id"] for q in demo_rows("queries.csv")[:8])
    assert chains == [[f"{c}-1990", f"{c}-2001"] for c in coins]
    for chain in linked.groups:
        assert [a.date for a in chain] == ["1990-06-01", "3 March 2001"]
        assert all(a.link.verified_score >= linked.threshold and a.link.inliers > 20 for a in chain)
    # no all-pairs matrix: far fewer pairs scored than the 496 pairs of 32 entries
    assert linked.pairs_scored < 32 * 11


def test_two_sales_linked_across_catalogues_and_written(sales, tmp_path):
    binary = str(Path(sys.executable).with_name("coinmatch"))
    out = tmp_path / "chains.csv"
    run = subprocess.run([binary, "link", str(sales["sale-1987"]), "--with", str(sales["sale-1975"]), "--out", str(out),
                          "--report", str(tmp_path / "chains.html"), "--json", str(tmp_path / "chains.json")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "6 coins appear more than once" in run.stdout and "entries/s" in run.stdout
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert list(rows[0])[:7] == ["group", "catalogue", "id", "image", "date", "score", "inliers"]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    assert len(groups) == 6
    for members in groups.values():  # the 1975 sale first, then 1987; the same coin
        assert [(m["catalogue"], m["date"]) for m in members] == [("sale-1975", "1975"), ("sale-1987", "12 May 1987")]
        assert members[0]["id"] == f"B-{members[1]['id']}" and int(members[0]["inliers"]) > 20
        assert members[1]["auction"] == "Example Auctions" and members[0]["auction"] == "Other House"
    chains = json.loads((tmp_path / "chains.json").read_text())
    assert len(chains["groups"]) == 6 and chains["threshold"] == 1.2 and chains["entries"] == 30
    html = (tmp_path / "chains.html").read_text()
    assert html.count('<section class="chain">') == 6 and "inliers</div>" in html and 'src="http' not in html


def test_a_group_must_hold_together():
    """Two coins each photographed twice (A1 A2, B1 B2), with one weak pair A2-B1 that passes on its own: the
    groups stay apart, since the other pairs across them fail; a third photo of A that passes with both joins."""
    a1, a2, a3, b1, b2 = (Node("c", n) for n in ("A1", "A2", "A3", "B1", "B2"))
    scores = {frozenset((a1, a2)): 1.8, frozenset((b1, b2)): 1.7, frozenset((a2, b1)): 1.25,
              frozenset((a3, a1)): 1.5, frozenset((a3, a2)): 1.4}

    class Stub:
        threshold = 1.2

        def best_pair(self, x, y):
            s = scores.get(frozenset((x, y)), 0.4)
            return Link(s - 1, 40, s, (("c", 0), ("c", 1)))

    links = {(x, y): Stub().best_pair(x, y) for x, y in (tuple(k) for k in scores)}
    groups = sorted(sorted(n.entry for n in g) for g in _groups(links, Stub()))
    assert groups == [["A1", "A2", "A3"], ["B1", "B2"]]


def test_catalogues_of_different_models_are_refused(sales, aligned_catalogue):
    with Catalogue.open(sales["sale-1987"]) as a, Catalogue.open(aligned_catalogue) as b:
        with pytest.raises(CoinmatchError, match="different models"):
            link_catalogues({"a": a, "b": b})

"""Local density taken off the shortlist's scores (hubness reduction, search.py). Real demo photos, a real
catalogue (the 60 demo catalogue photos, built with a four-angle model: conftest.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coinmatch.align import cyclic_similarity
from coinmatch.catalog.build import build_catalogue
from coinmatch.catalog.store import Catalogue
from coinmatch.evaluation.calibrate import store_calibration
from coinmatch.evaluation.protocol import load_query_images, read_queries
from coinmatch.evaluation.run import evaluate
from coinmatch.search import DENSITY_K, Searcher

from conftest import demo_rows, search_json, write_manifest

BIN = str(Path(sys.executable).with_name("coinmatch"))


def best_other_entries(scores: np.ndarray, row_entry: list[str], row: int) -> np.ndarray:
    """Each other entry's best score against ``row`` (an entry of several faces counts once)."""
    best: dict[str, float] = {}
    for r, s in enumerate(scores):
        if row_entry[r] != row_entry[row]:
            best[row_entry[r]] = max(best.get(row_entry[r], -np.inf), float(s))
    return np.sort(list(best.values()))


def test_density_is_the_mean_score_of_the_nearest_other_entries(aligned_catalogue):
    cosine, aligned = Searcher(aligned_catalogue, align=False), Searcher(aligned_catalogue)
    with Catalogue.open(aligned_catalogue) as cat:
        vectors, angles = cat.vectors(), cat.angle_vectors(range(len(cat)))
    rows = [0, 7, 31, 59]
    for row, got_cosine, got_aligned in zip(rows, cosine.densities(rows), aligned.densities(rows)):
        pooled = vectors @ vectors[row]
        exact = best_other_entries(pooled, cosine.row_entry, row)[-DENSITY_K:].mean()
        assert got_cosine == pytest.approx(exact, abs=1e-5)
        # as the aligned searcher scores a pair: (cosine + aligned cosine) / 2, over every entry
        both = (pooled + cyclic_similarity(angles[row][None], angles)[0]) / 2
        exact = best_other_entries(both, aligned.row_entry, row)[-DENSITY_K:].mean()
        assert got_aligned == pytest.approx(exact, abs=0.01) and got_aligned <= exact + 1e-6
    assert set(aligned._densities) == set(rows)  # kept: asked again, nothing is computed anew
    assert aligned.densities([31, 0]).tolist() == [aligned._densities[31], aligned._densities[0]]
    cosine.close(), aligned.close()


def test_search_takes_half_the_density_off_and_ranks_its_shortlist_again(aligned_catalogue, demo_dir):
    plain, dense = Searcher(aligned_catalogue, density=False), Searcher(aligned_catalogue)
    assert (plain.scoring, dense.scoring) == ("aligned", "aligned-density")
    queries = [demo_dir / q["image"] for q in demo_rows("queries.csv")[:6]]
    moved = 0
    for p, d in zip(plain.search(queries, top_k=20, candidates=20), dense.search(queries, top_k=20, candidates=20)):
        assert {m.id for m in p.matches} == {m.id for m in d.matches}  # the same shortlist ...
        before = {m.id: m.score for m in p.matches}
        for m in d.matches:  # ... each score less half its entry's density
            assert m.density == pytest.approx(float(dense.densities([m.row])[0]))
            assert m.score == pytest.approx(before[m.id] - m.density / 2, abs=1e-6)
        assert [m.score for m in d.matches] == sorted((m.score for m in d.matches), reverse=True)
        moved += [m.id for m in p.matches] != [m.id for m in d.matches]
    assert moved  # and so ranked again: densities differ from entry to entry
    plain.close(), dense.close()


def test_evaluation_scores_as_search_does_and_an_older_calibration_does_not_apply(tmp_path, aligned_catalogue,
                                                                                   demo_dir):
    root = tmp_path / "cat"
    shutil.copytree(aligned_catalogue, root)
    queries = read_queries(demo_dir / "queries.csv", "coin_id")[:8]
    images = load_query_images(queries, "photo")
    plain = Searcher(root, density=False)
    store_calibration(plain, evaluate(plain, queries, images, candidates=20), 0.05)  # on the aligned score alone
    plain.close()
    dense = Searcher(root)
    assert any("calibrated on the aligned score but searched by the aligned-density score" in n for n in dense.notes)
    [res] = dense.search([demo_dir / demo_rows("queries.csv")[0]["image"]])
    assert res.decision is None  # no decision on a threshold set for another score
    ev = evaluate(dense, queries, images, candidates=20)
    for o in ev.outcomes:
        if 1 <= o.rank <= 10:  # the true coin's score is the one search gives it
            assert o.positive == pytest.approx(o.top[o.rank - 1].score)
            assert o.top[o.rank - 1].density is not None
    calibration = store_calibration(dense, ev, 0.05)
    assert calibration["scoring"] == "aligned-density"
    [res] = dense.search([demo_dir / demo_rows("queries.csv")[0]["image"]])
    assert res.decision == ("match" if res.matches[0].score >= calibration["embedding_threshold"] else "no_match")
    dense.close()


def test_a_catalogue_of_one_coin_has_no_density(tmp_path, four_angle_model, pair_paths):
    cat_photo, query, coin = pair_paths[0]
    root = tmp_path / "one"
    build_catalogue(root, write_manifest(tmp_path / "one.csv", [{"id": coin, "image": str(cat_photo)}]),
                    model=str(four_angle_model), progress=False)
    searcher = Searcher(root)
    [res] = searcher.search([query])
    assert [m.id for m in res.matches] == [coin] and res.matches[0].density == 0.0
    assert res.matches[0].score == pytest.approx((res.matches[0].cosine + res.matches[0].aligned) / 2)
    searcher.close()


def test_the_command_line_takes_density_off_and_shows_it(aligned_catalogue, demo_dir):
    photo = demo_dir / demo_rows("queries.csv")[0]["image"]
    [dense] = search_json(aligned_catalogue, photo, [])
    without = Searcher(aligned_catalogue, density=False)
    plain = without.search([photo])[0].to_dict()["results"]
    without.close()
    assert all("density" in m for m in dense) and all("density" not in m for m in plain)
    assert all(m["score"] == pytest.approx((m["cosine"] + m["aligned"]) / 2, abs=2e-6) for m in plain)
    table = subprocess.run([BIN, "search", str(aligned_catalogue), str(photo)], capture_output=True, text=True)
    assert table.returncode == 0 and "density" in table.stdout

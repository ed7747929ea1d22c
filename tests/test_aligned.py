"""Matching angle by angle: a model of several angles gives a vector per angle, a catalogue built with it stores
them, and search scores its shortlist by (cosine + aligned cosine) / 2. Real demo photos throughout."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from coinmatch.catalog.build import add_to_catalogue, build_catalogue
from coinmatch.catalog.store import DB_NAME, Catalogue, CatalogueError
from coinmatch.evaluation.calibrate import store_calibration
from coinmatch.evaluation.protocol import load_query_images, read_queries
from coinmatch.evaluation.run import evaluate
from coinmatch.models.modelfile import build_network, load_model
from coinmatch.models.runtime import Embedder, to_batch
from coinmatch.prepare import prepare_photo
from coinmatch.align import cyclic_similarity
from coinmatch.search import Searcher

from conftest import FOUR_ANGLES, demo_rows, search_json, write_manifest

BIN = str(Path(sys.executable).with_name("coinmatch"))
CONFIG = FOUR_ANGLES  # the model of the four_angle_model and aligned_catalogue fixtures (conftest.py)


def test_angle_vectors_turn_with_the_coin(pair_paths):
    crop = cv2.resize(prepare_photo(pair_paths[0][1]).crop, (96, 96), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(to_batch([crop, np.rot90(crop).copy()], 96))
    net = build_network(CONFIG).eval()
    with torch.no_grad():
        pooled, angles = net.forward_with_angles(x)
        assert torch.allclose(pooled, net(x), atol=1e-6)  # the pooled vector is the plain forward's
    assert angles.shape == (2, 4, net.out_dim)
    assert torch.allclose(angles.norm(dim=-1), torch.ones(2, 4), atol=1e-5)
    # the coin turned a quarter: the same four angle vectors, shifted by one place (one way or the other)
    a, b = angles[0].numpy(), angles[1].numpy()
    shifts = [float(np.abs(np.roll(a, k, axis=0) - b).max()) for k in range(4)]
    assert min(shifts[1], shifts[3]) < 1e-3 < shifts[0]
    assert cyclic_similarity(a[None], b[None])[0, 0] > 0.999


def test_cyclic_similarity_is_the_best_shift_of_the_mean_angle_cosine():
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(3, 6, 8)), rng.normal(size=(5, 6, 8))
    q /= np.linalg.norm(q, axis=2, keepdims=True)
    c /= np.linalg.norm(c, axis=2, keepdims=True)
    brute = np.array([[max(np.mean([q[i, (j + k) % 6] @ c[m, j] for j in range(6)]) for k in range(6))
                       for m in range(5)] for i in range(3)])
    assert np.allclose(cyclic_similarity(q, c), brute)
    assert np.allclose(cyclic_similarity(q, np.roll(q, 2, axis=1)).diagonal(), 1)


def test_the_onnx_export_gives_both_outputs_and_leaves_the_network_as_it_was(tmp_path, four_angle_model, pair_paths):
    model = load_model(four_angle_model)
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    onnx = Embedder(model, onnx_file=tmp_path / "angles.onnx")
    assert onnx.backend == "onnx" and onnx.angles
    assert not model.network.training  # the exporter must not leave it training (batch-norm statistics move)
    assert all(torch.equal(before[k], v) for k, v in model.network.state_dict().items())
    crops = [prepare_photo(p[1]).crop for p in pair_paths[:3]]
    vectors, angles = onnx.embed_with_angles(crops)
    t_vectors, t_angles = Embedder(load_model(four_angle_model), backend="torch").embed_with_angles(crops)
    assert angles.shape == (3, 4, vectors.shape[1])
    assert np.abs(vectors - t_vectors).max() < 1e-4 and np.abs(angles - t_angles).max() < 1e-4
    assert np.array_equal(onnx.embed(crops), vectors)


def test_a_catalogue_of_a_several_angle_model_is_searched_angle_by_angle(aligned_catalogue, demo_dir):
    with Catalogue.open(aligned_catalogue) as cat:
        info = cat.info()
        assert info["angle_vectors"] == info["images"] == 60
        stored = cat.angle_vectors([0, 5])
    assert stored.shape == (2, 4, info["dim"]) and np.allclose(np.linalg.norm(stored, axis=2), 1, atol=2e-3)
    # the aligned score alone (local density, also taken off by default, is tested in test_density.py)
    aligned, pooled = Searcher(aligned_catalogue, density=False), Searcher(aligned_catalogue, align=False,
                                                                             density=False)
    assert (aligned.aligned, aligned.scoring, aligned.notes) == (True, "aligned", [])
    assert (pooled.aligned, pooled.scoring) == (False, "cosine")
    queries = [demo_dir / q["image"] for q in demo_rows("queries.csv")[:6]]
    for a, p in zip(aligned.search(queries, top_k=3, candidates=20), pooled.search(queries, top_k=20)):
        scores = [m.score for m in a.matches]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3
        for m in a.matches:
            assert m.score == pytest.approx((m.cosine + m.aligned) / 2)
            assert m.cosine == pytest.approx(next(x.score for x in p.matches if x.id == m.id), abs=1e-5)
            assert m.aligned < m.cosine + 1e-6  # one angle against one angle is never smoother than the pool
        assert {m.id for m in a.matches} <= {m.id for m in p.matches}  # a re-ranking of the pooled shortlist
        assert all(m.aligned is None for m in p.matches)
    aligned.close(), pooled.close()


def test_search_json_reports_both_scores_and_unaligned_the_cosine(aligned_catalogue, demo_dir):
    photo = demo_dir / demo_rows("queries.csv")[0]["image"]
    [with_angles] = search_json(aligned_catalogue, photo, [])
    pooled = Searcher(aligned_catalogue, align=False)
    without = pooled.search([photo])[0].to_dict()["results"]
    pooled.close()
    assert all(set(m) >= {"score", "cosine", "aligned", "density"} for m in with_angles)
    assert all(m["score"] == pytest.approx((m["cosine"] + m["aligned"]) / 2 - m["density"] / 2, abs=3e-6)
               for m in with_angles)
    assert all("aligned" not in m and "density" in m for m in without)
    cosines = {m["id"]: m["score"] + m["density"] / 2 for m in without}  # by default less half the density
    assert cosines.get(with_angles[0]["id"], with_angles[0]["cosine"]) == pytest.approx(with_angles[0]["cosine"],
                                                                                       abs=3e-6)


def test_a_catalogue_cropped_by_an_older_coin_finder_is_searched_and_says_so(tmp_path, aligned_catalogue):
    from coinmatch.segment import FINDER_VERSION

    searcher = Searcher(aligned_catalogue)
    assert searcher.catalogue.meta("coin_finder") == str(FINDER_VERSION) and searcher.notes == []
    searcher.close()
    old = tmp_path / "old"
    shutil.copytree(aligned_catalogue, old)
    with sqlite3.connect(old / DB_NAME) as db:  # as a catalogue built before the finder's version was kept
        db.execute("DELETE FROM meta WHERE key='coin_finder'")
    searcher = Searcher(old)
    assert len(searcher.notes) == 1 and f"coin finder 1, queries now by {FINDER_VERSION}" in searcher.notes[0]
    assert "rebuild the catalogue" in searcher.notes[0]
    searcher.close()


def test_a_catalogue_made_before_angle_vectors_falls_back_says_so_and_stays_consistent(
        tmp_path, aligned_catalogue, demo_dir):
    old = tmp_path / "old"
    shutil.copytree(aligned_catalogue, old)
    with sqlite3.connect(old / DB_NAME) as db:  # as a catalogue built by an earlier coinmatch
        db.execute("DROP TABLE angles")
    searcher = Searcher(old)
    assert not searcher.aligned and "rebuild the catalogue" in searcher.notes[0]
    [res] = searcher.search([demo_dir / demo_rows("queries.csv")[0]["image"]], top_k=2)
    assert res.matches[0].aligned is None
    searcher.close()
    # new entries added to it get no angle vectors either: the catalogue is scored one way throughout
    rows = demo_rows("queries.csv")[:2]
    extra = write_manifest(tmp_path / "extra.csv", [{"image": str(demo_dir / r["image"]), "id": f"new-{i}"}
                                                    for i, r in enumerate(rows)])
    info = add_to_catalogue(old, extra, progress=False)
    assert (info["added"], info["angle_vectors"]) == (2, 0)
    # while one built with them keeps them for what is added
    fresh = tmp_path / "fresh"
    shutil.copytree(aligned_catalogue, fresh)
    assert add_to_catalogue(fresh, extra, progress=False)["angle_vectors"] == 62
    with Catalogue.open(fresh) as cat:
        assert cat.has_angles()


def test_evaluation_and_calibration_use_the_aligned_score(tmp_path, aligned_catalogue, demo_dir):
    root = tmp_path / "cat"
    shutil.copytree(aligned_catalogue, root)
    searcher = Searcher(root)
    queries = read_queries(demo_dir / "queries.csv", "coin_id")[:8]
    images = load_query_images(queries, "photo")
    ev = evaluate(searcher, queries, images, candidates=20)
    for o in ev.outcomes:  # the true coin's score is the one search gives it
        if 1 <= o.rank <= 10:
            assert o.positive == pytest.approx(o.top[o.rank - 1].score)
            assert o.top[o.rank - 1].aligned is not None
    calibration = store_calibration(searcher, ev, 0.05)
    assert calibration["scoring"] == "aligned-density"
    [res] = searcher.search([demo_dir / demo_rows("queries.csv")[0]["image"]])
    assert res.decision == ("match" if res.matches[0].score >= calibration["embedding_threshold"] else "no_match")
    searcher.close()
    # searched by the cosine alone, the stored threshold does not apply: no decision, and a note says why
    pooled = Searcher(root, align=False)
    assert any("calibrate again" in n for n in pooled.notes)
    [res] = pooled.search([demo_dir / demo_rows("queries.csv")[0]["image"]])
    assert res.decision is None
    pooled.close()


def test_both_faces_are_each_scored_angle_by_angle(tmp_path, four_angle_model, pair_paths):
    """Lots of two faces (first shots of two real coins); the query gives both second shots."""
    lots = [(pair_paths[i], pair_paths[i + 1]) for i in range(0, 8, 2)]
    rows = [{"id": f"lot{i}", "obverse": str(o[0]), "reverse": str(r[0])} for i, (o, r) in enumerate(lots)]
    root = tmp_path / "lots"
    build_catalogue(root, write_manifest(tmp_path / "lots.csv", rows), model=str(four_angle_model), progress=False)
    searcher = Searcher(root)
    assert searcher.aligned
    faces = {"obverse": prepare_photo(lots[0][0][1]), "reverse": prepare_photo(lots[0][1][1])}
    result = searcher.search_faces(faces, top_k=4)
    assert [m.score for m in result.matches] == sorted((m.score for m in result.matches), reverse=True)
    vectors, angles = searcher.embed([faces["obverse"].crop, faces["reverse"].crop])
    for m in result.matches:  # each face against the entry's face of its side, (cosine + aligned) / 2 less half
        row = {side: r for r, side in searcher.catalogue.entry_rows(m.id)}  # its density, then the mean
        per_face = [(float(searcher.catalogue.vectors([row[s]])[0] @ vectors[k])
                     + float(searcher.aligned_scores(angles[k], [row[s]])[0])) / 2
                    - float(searcher.densities([row[s]])[0]) / 2
                    for k, s in enumerate(("obverse", "reverse"))]
        assert m.score == pytest.approx(np.mean(per_face), abs=1e-5)
    searcher.close()


THREE_ANGLES = np.zeros((3, 1280), np.float16).tobytes()  # 3 of Lite0's 1280-d vectors where the model gives 4


@pytest.mark.parametrize("rows, blob, message", [
    ("row = 3", b"\x00" * 7, "the angle vectors of image row 3 are damaged"),  # cut short
    ("row = 3", THREE_ANGLES, "row 3 holds 3 angle vectors and row"),  # one image unlike the others
    ("1 = 1", THREE_ANGLES, "images hold 3 angle vectors each, the model gives 4"),  # every image unlike the model
])
def test_damaged_angle_vectors_give_one_clear_error(tmp_path, aligned_catalogue, demo_dir, rows, blob, message):
    root = tmp_path / "cat"
    shutil.copytree(aligned_catalogue, root)
    with sqlite3.connect(root / DB_NAME) as db:
        db.execute(f"UPDATE angles SET vectors=? WHERE {rows}", (blob,))
    searcher = Searcher(root)
    with pytest.raises(CatalogueError, match=message) as exc:
        searcher.search([demo_dir / demo_rows("catalogue.csv")[3]["image"]], top_k=3)  # row 3 is shortlisted first
    assert str(root) in str(exc.value)
    searcher.close()


def test_compare_with_a_several_angle_model_scores_as_search_does(tmp_path, four_angle_model, pair_paths):
    from coinmatch.verify import combined_score

    cat, query, _ = pair_paths[0]  # one real coin photographed twice
    proc = subprocess.run([BIN, "compare", str(cat), str(query), "--model", str(four_angle_model), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert -1 <= result["aligned"] <= result["cosine"] + 1e-6 and result["inliers"] > 0
    assert result["score"] == pytest.approx(combined_score((result["cosine"] + result["aligned"]) / 2,
                                                           result["inliers"]))
    plain = subprocess.run([BIN, "compare", str(cat), str(query), "--json"], capture_output=True, text=True)
    assert "aligned" not in json.loads(plain.stdout)  # the default model pools no angles

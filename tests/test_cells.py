"""Cell descriptors: a coin compared cell by cell, where on it each feature lies (models/network.py's ``cells``)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import demo_rows, search_json
from coinmatch import CoinmatchError
from coinmatch.align import cell_similarity
from coinmatch.catalog.store import DB_NAME, CatalogueError
from coinmatch.evaluation.protocol import catalogue_like_at
from coinmatch.images import load_rgb
from coinmatch.models.modelfile import LoadedModel, ModelConfig, build_network, load_model, save_model
from coinmatch.models.network import disc_cells
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_array
from coinmatch.search import CELL_WEIGHT, Searcher
from coinmatch.training.cells import cell_whitening, fit_cells

BIN = str(Path(sys.executable).with_name("coinmatch"))
CELLS = ModelConfig(image_size=160, grey=True, rotations=8, cells=24, trained=True)


@pytest.fixture(scope="module")
def catalogue_crops(demo_dir) -> dict[str, np.ndarray]:
    return {r["id"]: prepare_array(load_rgb(demo_dir / r["image"])).crop for r in demo_rows("catalogue.csv")}


@pytest.fixture(scope="module")
def cells_model(tmp_path_factory, catalogue_crops) -> Path:
    """Grey ImageNet Lite0 of eight angles, its cell whitening fitted on the 60 demo catalogue photos."""
    net = build_network(CELLS).eval()
    sized = [cv2.resize(c, (CELLS.image_size,) * 2, interpolation=cv2.INTER_AREA) for c in catalogue_crops.values()]
    n = fit_cells(net, sized)
    assert n == 60 * 21  # Lite0's block 5 at 160 px: 5 x 5 cells, 21 of them on the coin's disc
    path = tmp_path_factory.mktemp("cells") / "cells.cm"
    save_model(net, CELLS, path)
    return path


def test_cell_similarity_takes_the_best_angle_of_the_mean_cell_cosine():
    rng = np.random.default_rng(0)
    cells = rng.normal(size=(3, 4, 5))  # 3 coins, 4 cells of 5 values
    cells /= np.linalg.norm(cells, axis=2, keepdims=True) * 2  # unit cells over the square root of 4
    entries = cells.reshape(3, -1)
    queries = np.stack([np.stack([entries[1] * 0.5, entries[0], -entries[2]]),  # angle 1 is coin 0 as it lies
                        np.stack([-entries[0], -entries[1], -entries[2]])])
    S = cell_similarity(queries, entries)
    assert S.shape == (2, 3)
    assert S[0, 0] == pytest.approx(1.0) and S[0, 1] == pytest.approx(0.5)  # the better of angle 1 and angle 0
    assert S[1, 1] == pytest.approx(max(-entries[0] @ entries[1], -1.0, -entries[2] @ entries[1]))


def test_cell_whitening_is_pca_whitening_of_the_cells():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 6)) * np.array([5, 3, 1, 1, 0.5, 0.1]) + 2
    mean, projection = cell_whitening(x, 3)
    y = (x - mean) @ projection
    assert np.allclose(np.cov(y.T, bias=True), np.eye(3), atol=1e-6)  # decorrelated, unit variance
    assert np.allclose(mean, x.mean(0))
    with pytest.raises(ValueError, match="at most that many"):
        cell_whitening(x, 7)


def test_an_unknown_cell_fit_is_refused(catalogue_crops):
    net = build_network(CELLS)
    with pytest.raises(ValueError, match="unknown cell fit 'ica'; choose one of learned, pca"):
        fit_cells(net, list(catalogue_crops.values())[:2], fit="ica")
    with pytest.raises(ValueError, match="no cell descriptors to fit"):
        fit_cells(build_network(ModelConfig()), list(catalogue_crops.values())[:2])


def test_cells_come_from_the_same_pass_and_onnx_gives_torchs(cells_model, catalogue_crops):
    crops = list(catalogue_crops.values())[:5]
    onnx = Embedder(str(cells_model))
    assert onnx.backend == "onnx"
    v, a, c = onnx.embed_with_cells(crops)
    tv, ta, tc = Embedder(str(cells_model), backend="torch").embed_with_cells(crops)
    assert c.shape == (5, 8, 21 * 24)
    assert max(np.abs(v - tv).max(), np.abs(a - ta).max(), np.abs(c - tc).max()) < 1e-4
    assert np.allclose(np.linalg.norm(c, axis=2), 1.0, atol=1e-4)  # 21 unit cells over the square root of 21
    plain = ModelConfig(**{**CELLS.__dict__, "cells": 0})  # the same network without cells: the same vectors
    net = build_network(plain).eval()
    net.load_state_dict(load_model(cells_model).network.state_dict(), strict=False)
    pv, pa = Embedder(LoadedModel(net, plain, "plain", "test"), backend="torch").embed_with_angles(crops)
    assert np.abs(pv - v).max() < 1e-4 and np.abs(pa - a).max() < 1e-4


def test_cells_from_another_map_are_kept_with_the_model(tmp_path, catalogue_crops):
    """``cell_map`` 4 keeps Lite0's block 4 (112 channels, 10 x 10 cells at 160 px) instead of block 5, and the
    model file keeps that choice."""
    config = ModelConfig(**{**CELLS.__dict__, "cell_map": 4})
    net = build_network(config).eval()
    sized = [cv2.resize(c, (CELLS.image_size,) * 2, interpolation=cv2.INTER_AREA)
             for c in list(catalogue_crops.values())[:6]]
    k = len(disc_cells(10, 10))
    assert fit_cells(net, sized, fit="pca") == 6 * k and net.cell_mean.shape == (112,)
    path = tmp_path / "block4.cm"
    save_model(net, config, path)
    model = load_model(path)
    assert model.config.cell_map == 4 and model.network.cell_map == 4
    assert Embedder(model, backend="torch").embed_with_cells(sized[:2])[2].shape == (2, 8, k * 24)
    default = build_network(CELLS)
    assert default.cell_map == 3 and len(default.cell_mean) == 192


def test_a_coin_turned_grey_and_shrunk_is_found_cell_by_cell(cells_model, catalogue_crops, pair_paths):
    """Real coins photographed twice: the second photo grey, turned and shrunk as an old catalogue shows it, found
    among the 60 catalogue photos (most of them 10 cent coins of one design) by the cell score alone."""
    emb = Embedder(str(cells_model))
    ids = list(catalogue_crops)
    entries = emb.embed_with_cells(list(catalogue_crops.values()))[2][:, 0]  # as each coin lies
    rng = np.random.default_rng(0)
    queries = [prepare_array(catalogue_like_at(load_rgb(q), float(rng.uniform(0, 360)))).crop for _, q, _ in pair_paths]
    S = cell_similarity(emb.embed_with_cells(queries)[2], entries)
    first = [ids[i] for i in S.argmax(1)]
    assert sum(f == coin for f, (_, _, coin) in zip(first, pair_paths)) >= 21  # of 24
    own = S[np.arange(len(S)), [ids.index(coin) for _, _, coin in pair_paths]]
    assert np.all(own > np.median(S, axis=1))  # even a coin not ranked first scores above most others


def test_search_adds_the_cell_score_and_says_so(tmp_path, cells_model, demo_dir, pair_paths):
    from coinmatch.catalog.build import build_catalogue

    root = tmp_path / "cat"
    build_catalogue(root, demo_dir / "catalogue.csv", model=str(cells_model), progress=False)
    info = json.loads(subprocess.run([BIN, "catalog", "info", str(root), "--json"], capture_output=True, text=True,
                                     timeout=120).stdout)
    assert info["cell_descriptors"] == info["images"] == 60
    _, query, coin = pair_paths[2]
    with_cells, without = search_json(root, query, [], ["--no-cells"])
    top = with_cells[0]
    assert top["id"] == coin and "cells" not in without[0]
    assert top["score"] == pytest.approx((top["cosine"] + top["aligned"]) / 2 + CELL_WEIGHT * top["cells"]
                                         - top["density"] / 2, abs=1e-5)
    assert [r["cells"] for r in with_cells] and top["cells"] > max(r["cells"] for r in with_cells[1:])
    searcher = Searcher(root)
    assert searcher.celled and searcher.scoring == "aligned-cells-density"
    assert Searcher(root, cells=False).scoring == "aligned-density"
    searcher.close()
    with sqlite3.connect(root / DB_NAME) as db:  # a damaged descriptor: one clear error naming the catalogue
        db.execute("UPDATE cells SET descriptor=? WHERE row = 3", (b"\x00" * 7,))
    with pytest.raises(CatalogueError, match=re.escape(f"{root}: the cell descriptors of image row 3 are damaged")):
        Searcher(root).search([demo_dir / demo_rows("catalogue.csv")[3]["image"]], top_k=3)


def test_a_catalogue_without_cells_is_searched_without_them_and_says_so(tmp_path, cells_model, demo_dir, pair_paths):
    from coinmatch.catalog.build import build_catalogue

    root = tmp_path / "cat"
    build_catalogue(root, demo_dir / "catalogue.csv", model=str(cells_model), progress=False)
    with sqlite3.connect(root / DB_NAME) as db:  # as a catalogue made before cells were kept
        db.execute("DROP TABLE cells")
    searcher = Searcher(root)
    assert not searcher.celled and searcher.scoring == "aligned-density"
    assert any("no cell descriptors stored" in n for n in searcher.notes)
    result = searcher.search([pair_paths[0][1]], top_k=3)[0]
    assert result.results[0].cells is None
    searcher.close()


def test_train_whitening_with_cells(tmp_path, demo_dir):
    from coinmatch.training import loop

    out = tmp_path / "white-cells.cm"
    cfg = loop.TrainConfig(manifests=[str(demo_dir / "catalogue.csv")], out=str(out), loss="whitening", dim=16,
                           image_size=96, grey=True, rotations=2, cells=8, disk_cache=False)
    loop.train(cfg, progress=False)
    model = load_model(out)
    info = model.config.info["cells"]
    assert model.config.cells == 8 and (info["dim"], info["fit"]) == (8, "learned")
    assert info["fitted_on_cells"] == model.config.info["pairs"] * 9  # every training photo, 3 x 3 cells at 96 px
    assert float(np.abs(model.network.cell_projection.numpy()).sum()) > 0  # fitted, not the zeros it starts at
    crops = [prepare_array(load_rgb(demo_dir / r["image"])).crop for r in demo_rows("catalogue.csv")[:2]]
    assert Embedder(model).embed_with_cells(crops)[2].shape == (2, 2, 9 * 8)


@pytest.mark.parametrize("options, says", [
    ({"loss": "triplet", "cells": 8}, "--cells is fitted in closed form beside the whitening: use it with --loss "
                                      "whitening, not triplet"),
    ({"loss": "whitening", "cells": 500}, "--cells 500: efficientnet_lite0's cell map has 192 channels, so at most 192"),
    ({"loss": "whitening", "cells": -1}, "--cells must be 0 or more, not -1"),
    ({"loss": "whitening", "cells": 8, "cell_map": 9}, "--cell-map 9: this backbone has 8 feature maps to pool; 9 "
                                                       "asked for"),
    ({"loss": "whitening", "cell_map": 4}, "--cell-map chooses the map of the cell descriptors: use it with --cells"),
])
def test_bad_cells_options_are_refused_before_any_photo_is_read(tmp_path, monkeypatch, options, says):
    from coinmatch.training import loop

    def no_photos(*args, **kwargs):
        raise AssertionError("the training photos were read before the option was checked")

    monkeypatch.setattr(loop, "load_cache", no_photos)
    with pytest.raises(CoinmatchError, match=re.escape(says)):
        loop.train(loop.TrainConfig(manifests=["any.csv"], out=str(tmp_path / "m.cm"), **options), progress=False)


def test_compare_adds_the_cell_score(cells_model, pair_paths):
    from coinmatch.verify import combined_score

    cat, query, _ = pair_paths[0]
    proc = subprocess.run([BIN, "compare", str(cat), str(query), "--model", str(cells_model), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert 0.5 < r["cells"] <= 1.0 + 1e-6
    assert r["score"] == pytest.approx(combined_score((r["cosine"] + r["aligned"]) / 2 + CELL_WEIGHT * r["cells"],
                                                      r["inliers"]))

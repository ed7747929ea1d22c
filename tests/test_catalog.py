import json
import shutil

import faiss
import numpy as np
import pytest

from coinmatch.catalog.build import add_to_catalogue, build_catalogue
from coinmatch.catalog.manifest import ManifestError, read_manifest
from coinmatch.catalog.store import Catalogue, CatalogueError
from coinmatch.images import ImageError
from coinmatch.search import Searcher

from conftest import demo_rows, write_manifest


def test_manifest_keeps_metadata_and_resolves_paths(small_manifest):
    entries = read_manifest(small_manifest)
    assert len(entries) == 8
    e = entries[0]
    assert e.faces[0].path.is_file() and e.faces[0].relpath.startswith("imgs/")
    assert e.metadata == {"denomination": e.metadata["denomination"]} and "id" not in e.metadata


def test_manifest_faces_by_columns_and_by_side_rows(tmp_path, pair_paths):
    a, b, _ = pair_paths[0]
    write_manifest(tmp_path / "cols.csv", [{"obverse": str(a), "reverse": str(b), "id": "x", "lot": "12"}])
    [e] = read_manifest(tmp_path / "cols.csv")
    assert [f.side for f in e.faces] == ["obverse", "reverse"] and e.metadata == {"lot": "12"}
    write_manifest(tmp_path / "rows.csv", [{"image": str(a), "coin_id": "x", "side": "obv"},
                                           {"image": str(b), "coin_id": "x", "side": "rev"}])
    [e] = read_manifest(tmp_path / "rows.csv")
    assert e.id == "x" and [f.side for f in e.faces] == ["obverse", "reverse"]


@pytest.mark.parametrize("text, message", [
    ("", "empty manifest"),
    ("path,id\nx.jpg,1\n", "no 'image' column"),
    ("image,id\nmissing.jpg,1\n", "line 2: image 'missing.jpg' not found"),
    ("image,id\n{img},1\n{img},1\n", "line 3: id '1' appears twice"),
    ("image,id\n{img},1,extra\n", "line 2: more fields"),
    ('image,id\n"{img},1\n', "malformed CSV"),
])
def test_malformed_manifests_name_the_file_line_and_cause(tmp_path, pair_paths, text, message):
    path = tmp_path / "m.csv"
    path.write_text(text.replace("{img}", str(pair_paths[0][0])))
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_binary_file_is_not_a_manifest(tmp_path, pair_paths):
    path = tmp_path / "photo.csv"
    shutil.copy(pair_paths[0][0], path)
    with pytest.raises(ManifestError, match="not a UTF-8 text file|binary"):
        read_manifest(path)


def test_build_add_search_and_info(tmp_path, small_manifest, pair_paths, demo_dir):
    root = tmp_path / "cat"
    info = build_catalogue(root, small_manifest, progress=False)
    assert info["entries"] == 8 and info["images"] == 8 and info["verification_features"] == 8
    assert info["model_source"] == "builtin:efficientnet_lite0" and len(info["model_fingerprint"]) == 16
    assert all((root / "thumbs" / f"{i}.jpg").is_file() for i in range(8))

    # add three more coins: only they are embedded, the first eight are untouched
    with Catalogue.open(root) as cat:
        before = cat.vectors()
    rows = [r for r in demo_rows("catalogue.csv")[5:8]]
    extra = write_manifest(tmp_path / "extra.csv", [
        {"image": str(demo_dir / r["image"]), "id": r["id"], "denomination": r["denomination"]} for r in rows])
    info = add_to_catalogue(root, extra, progress=False)
    assert info["added"] == 3 and info["entries"] == 11
    with Catalogue.open(root) as cat:
        assert np.array_equal(cat.vectors(range(8)), before)
        assert len(list(root.glob("vectors-*.faiss"))) == 1

    # each of the added coins is found by its second photograph
    searcher = Searcher(root)
    second = {q["coin_id"]: demo_dir / q["image"] for q in demo_rows("queries.csv")}
    for r in rows:
        if r["id"] in second:
            [res] = searcher.search([second[r["id"]]], top_k=3)
            assert res.matches[0].id == r["id"]
            assert res.matches[0].score >= res.matches[1].score
            assert res.matches[0].metadata["denomination"] == r["denomination"]
    searcher.close()


def test_adding_an_existing_id_changes_nothing(tmp_path, small_manifest):
    root = tmp_path / "cat"
    build_catalogue(root, small_manifest, progress=False)
    with pytest.raises(CatalogueError, match="already in"):
        add_to_catalogue(root, small_manifest, progress=False)
    with Catalogue.open(root) as cat:
        assert cat.n_entries() == 8 and len(cat) == 8


def test_a_bad_image_mid_add_names_it_and_loses_nothing(tmp_path, small_manifest, broken_files, pair_paths):
    root = tmp_path / "cat"
    build_catalogue(root, small_manifest, progress=False)
    manifest = write_manifest(tmp_path / "bad.csv", [
        {"image": str(pair_paths[-1][1]), "id": "good"}, {"image": str(broken_files["truncated"]), "id": "bad"}])
    with pytest.raises(ImageError, match="truncated.jpg"):
        add_to_catalogue(root, manifest, progress=False)
    with Catalogue.open(root) as cat:
        assert cat.n_entries() == 8 and cat.index.ntotal == 8 and not cat.has_entry("good")
    info = add_to_catalogue(root, manifest, progress=False, skip_bad=True)
    assert info["added"] == 1 and "truncated.jpg" in info["skipped"][0]


def test_a_crash_while_writing_leaves_the_last_good_catalogue(tmp_path, small_manifest, pair_paths, monkeypatch):
    root = tmp_path / "cat"
    build_catalogue(root, small_manifest, progress=False)
    manifest = write_manifest(tmp_path / "one.csv", [{"image": str(pair_paths[-1][1]), "id": "new"}])

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(OSError, match="disk full"):
        add_to_catalogue(root, manifest, progress=False)
    monkeypatch.undo()
    with Catalogue.open(root) as cat:
        assert cat.n_entries() == 8 and cat.index.ntotal == 8
    assert add_to_catalogue(root, manifest, progress=False)["added"] == 1


def test_a_failed_rebuild_keeps_the_old_catalogue(tmp_path, small_manifest, broken_files):
    root = tmp_path / "cat"
    build_catalogue(root, small_manifest, progress=False)
    bad = write_manifest(tmp_path / "bad.csv", [{"image": str(broken_files["corrupt"]), "id": "x"}])
    with pytest.raises(ImageError):
        build_catalogue(root, bad, progress=False)
    with Catalogue.open(root) as cat:
        assert cat.n_entries() == 8
    assert not list(tmp_path.glob(".cat.building-*"))


def test_refuses_a_catalogue_built_by_another_model(tmp_path, small_manifest):
    from coinmatch.models.modelfile import ModelConfig, build_network, save_model

    root = tmp_path / "cat"
    build_catalogue(root, small_manifest, progress=False)
    config = ModelConfig(dim=64, trained=True)
    save_model(build_network(config), config, tmp_path / "other.cm")
    with pytest.raises(CatalogueError, match="cannot be compared"):
        add_to_catalogue(root, small_manifest, model=str(tmp_path / "other.cm"), progress=False)
    from coinmatch.models.runtime import Embedder
    with pytest.raises(CatalogueError, match="cannot be compared"):
        Searcher(root, embedder=Embedder(str(tmp_path / "other.cm"), backend="torch"))


def test_refuses_to_overwrite_a_folder_that_is_not_a_catalogue(tmp_path, small_manifest):
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(CatalogueError, match="not a catalogue"):
        build_catalogue(precious, small_manifest, progress=False)
    assert (precious / "keep.txt").read_text() == "mine"


def test_damaged_catalogue_files_give_clear_errors(tmp_path, small_manifest):
    root = tmp_path / "cat"
    build_catalogue(root, small_manifest, progress=False)
    with Catalogue.open(root) as cat:
        vec_file = root / cat.meta("vectors_file")
    vec_file.write_bytes(b"garbage")
    with pytest.raises(CatalogueError, match="damaged vector index"):
        Catalogue.open(root).index
    (root / "catalog.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(CatalogueError, match="damaged catalogue database"):
        Catalogue.open(root)
    with pytest.raises(CatalogueError, match="not a coinmatch catalogue"):
        Catalogue.open(tmp_path)


def test_catalogue_info_is_json_serialisable(tmp_path, small_manifest):
    info = build_catalogue(tmp_path / "cat", small_manifest, progress=False)
    assert json.loads(json.dumps(info))["entries"] == 8


def test_hnsw_index_for_large_catalogues_gives_the_same_answers(tmp_path, small_manifest, pair_paths, demo_dir):
    flat = build_catalogue(tmp_path / "flat", small_manifest, progress=False)
    hnsw = build_catalogue(tmp_path / "hnsw", small_manifest, progress=False, index="hnsw")
    assert hnsw["index"] == "hnsw" and flat["model_fingerprint"] == hnsw["model_fingerprint"]
    extra = write_manifest(tmp_path / "extra.csv", [{"image": str(pair_paths[-1][0]), "id": "late-addition"}])
    add_to_catalogue(tmp_path / "hnsw", extra, progress=False)
    a, b = Searcher(tmp_path / "flat"), Searcher(tmp_path / "hnsw")
    for q in demo_rows("queries.csv")[:4]:
        ra = a.search([demo_dir / q["image"]], top_k=3)[0]
        rb = b.search([demo_dir / q["image"]], top_k=3)[0]
        assert [m.id for m in ra.matches][:2] == [m.id for m in rb.matches if m.id != "late-addition"][:2]
    [late] = b.search([pair_paths[-1][1]], top_k=1)
    assert late.matches[0].id == "late-addition"
    a.close()
    b.close()

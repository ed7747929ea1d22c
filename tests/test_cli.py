"""The command line, run as a user runs it: a real process, real photos, real files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, demo_rows

BIN = os.path.join(os.path.dirname(sys.executable), "coinmatch")


def run(*args, check=True):
    proc = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200"})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def demo_catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "cat"
    run("catalog", "build", root, "demo/data/catalogue.csv", "--json")
    return root


def test_build_info_json_contract(demo_catalogue):
    info = json.loads(run("catalog", "info", demo_catalogue, "--json").stdout)
    assert info["entries"] == 60 and info["images"] == 60 and info["dim"] == 1280
    assert info["model_source"] == "builtin:efficientnet_lite0" and info["threshold"] is None
    table = run("catalog", "info", demo_catalogue).stdout
    assert "entries" in table and "60" in table


def test_search_json_one_object_per_photo(demo_catalogue):
    queries = demo_rows("queries.csv")[:3]
    proc = run("search", demo_catalogue, *[f"demo/data/{q['image']}" for q in queries], "--top-k", "4", "--json")
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3
    for line, q in zip(lines, queries):
        obj = json.loads(line)
        assert obj["query"].endswith(q["image"])
        res = obj["results"]
        assert len(res) == 4 and set(res[0]) >= {"id", "score", "image", "metadata"}
        assert [r["score"] for r in res] == sorted((r["score"] for r in res), reverse=True)
        assert res[0]["id"] == q["coin_id"]
        assert res[0]["metadata"]["denomination"] == q["denomination"]


def test_search_table_and_verify(demo_catalogue):
    q = demo_rows("queries.csv")[5]
    out = run("search", demo_catalogue, f"demo/data/{q['image']}", "--verify", "--top-k", "3").stdout
    assert q["coin_id"] in out and "inliers" in out
    obj = json.loads(run("search", demo_catalogue, f"demo/data/{q['image']}", "--verify", "--json").stdout)
    assert obj["results"][0]["id"] == q["coin_id"] and obj["results"][0]["inliers"] >= 15


def test_bad_query_photo_gives_a_clear_error_and_others_still_run(demo_catalogue, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = f"demo/data/{demo_rows('queries.csv')[0]['image']}"
    proc = run("search", demo_catalogue, bad, good, "--json", check=False)
    assert proc.returncode == 1
    first, second = [json.loads(x) for x in proc.stdout.strip().splitlines()]
    assert "broken.jpg" in first["error"] and first["results"] == []
    assert second["results"]


def test_missing_catalogue_and_manifest_fail_with_one_line(tmp_path):
    proc = run("search", tmp_path / "nowhere", "x.jpg", check=False)
    assert proc.returncode == 2 and "nowhere" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("catalog", "build", tmp_path / "c", tmp_path / "missing.csv", check=False)
    assert proc.returncode == 2 and "missing.csv: manifest not found" in proc.stderr


def test_embed_writes_vectors_and_ids(tmp_path):
    out = tmp_path / "v.npy"
    run("embed", "demo/data/queries.csv", "--out", out)
    v = np.load(out)
    ids = out.with_suffix(".ids.txt").read_text().splitlines()
    assert v.shape == (24, 1280) and len(ids) == 24 and ids[0].split("\t")[1].startswith("queries/")


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "coinmatch", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "catalog" in proc.stdout and "search" in proc.stdout


def test_names_with_brackets_are_printed_as_they_are(demo_catalogue, tmp_path):
    """'[...]' in a file name (common in museum and auction file names) is text, not rich markup: the table and the
    one-line error show it whole (before, rich took '[Trajan]' and '[obverse]' for styles and dropped them)."""
    q = demo_rows("queries.csv")[0]
    good = tmp_path / "RIC II [Trajan] query.jpg"
    good.write_bytes((ROOT / "demo" / "data" / q["image"]).read_bytes())
    bad = tmp_path / "lot 12 [obverse] [b].jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    proc = run("search", demo_catalogue, good, bad, "--top-k", "2", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "RIC II [Trajan] query.jpg" in proc.stdout and q["coin_id"] in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "lot 12 [obverse] [b].jpg" in errors[0]


def test_catalog_add_then_search_finds_the_added_coin(tmp_path):
    rows = demo_rows("catalogue.csv")
    first, late = tmp_path / "first.csv", tmp_path / "late.csv"
    for path, part in ((first, rows[:6]), (late, rows[6:8])):
        path.write_text("image,id\n" + "".join(f"{ROOT / 'demo/data' / r['image']},{r['id']}\n" for r in part))
    run("catalog", "build", tmp_path / "cat", first, "--json")
    info = json.loads(run("catalog", "add", tmp_path / "cat", late, "--json").stdout)
    assert (info["entries"], info["added"], info["verification_features"]) == (8, 2, 8)
    added = rows[7]  # one of the 24 coins photographed twice: its second photo is a query
    [query] = [q for q in demo_rows("queries.csv") if q["coin_id"] == added["id"]]
    obj = json.loads(run("search", tmp_path / "cat", ROOT / "demo/data" / query["image"], "--verify", "--json").stdout)
    assert obj["results"][0]["id"] == added["id"]
    again = run("catalog", "add", tmp_path / "cat", late, check=False)
    assert again.returncode == 2 and "already in" in again.stderr


def test_search_by_obverse_and_reverse(tmp_path):
    pairs = demo_rows("queries.csv")[:4]
    cat_of = {r["id"]: r["image"] for r in demo_rows("catalogue.csv")}
    lines = "".join(f"{ROOT / 'demo/data' / cat_of[q['coin_id']]},{ROOT / 'demo/data' / q['image']},{q['coin_id']}\n"
                    for q in pairs)
    (tmp_path / "faces.csv").write_text("obverse,reverse,id\n" + lines)
    run("catalog", "build", tmp_path / "cat", tmp_path / "faces.csv", "--json")
    target = pairs[2]
    obj = json.loads(run("search", tmp_path / "cat", "--obverse", ROOT / "demo/data" / cat_of[target["coin_id"]],
                         "--reverse", ROOT / "demo/data" / target["image"], "--verify", "--json").stdout)
    assert obj["results"][0]["id"] == target["coin_id"] and " + " in obj["query"]
    assert obj["results"][0]["inliers"] > 100  # both faces' inliers, each the same photo as stored


def test_eval_verify_and_calibrate_with_and_without_verify(demo_catalogue, tmp_path):
    import shutil

    s = json.loads(run("eval", demo_catalogue, "demo/data/queries.csv", "--id-column", "coin_id", "--verify",
                       "--json").stdout)
    assert s["verified"] and s["recall@1"] == 1.0 and s["without_verification"]["recall@1"] >= 0.9
    assert s["queries"] == 24 and s["warnings"] == []
    cat = tmp_path / "cat"
    shutil.copytree(demo_catalogue, cat)
    verified = json.loads(run("calibrate", cat, "demo/data/queries.csv", "--id-column", "coin_id", "--verify",
                              "--json").stdout)
    assert verified["mode"] == "verified" and verified["scoring"] == "cosine-density"
    plain = json.loads(run("calibrate", cat, "demo/data/queries.csv", "--id-column", "coin_id", "--json").stdout)
    assert plain["mode"] == "embedding" and "verified_threshold" not in plain
    info = json.loads(run("catalog", "info", cat, "--json").stdout)
    assert info["calibration"] == plain and info["threshold"] == plain["threshold"]
    text = run("calibrate", cat, "demo/data/queries.csv", "--id-column", "coin_id").stdout
    assert "stored threshold" in text and "24 queries" in text


def test_compare_draws_its_evidence(tmp_path):
    q = demo_rows("queries.csv")[0]
    cat_of = {r["id"]: r["image"] for r in demo_rows("catalogue.csv")}
    out = tmp_path / "evidence.png"
    obj = json.loads(run("compare", ROOT / "demo/data" / cat_of[q["coin_id"]], ROOT / "demo/data" / q["image"],
                         "--out", out, "--json").stdout)
    assert obj["inliers"] >= 40 and obj["scale"] is not None and out.stat().st_size > 10_000
    bad = run("compare", ROOT / "demo/data" / q["image"], tmp_path / "missing.jpg", check=False)
    assert bad.returncode == 2 and "missing.jpg: file not found" in bad.stderr


def test_build_with_an_hnsw_index_answers_as_the_exact_one(demo_catalogue, tmp_path):
    run("catalog", "build", tmp_path / "hnsw", "demo/data/catalogue.csv", "--index", "hnsw", "--no-features")
    info = json.loads(run("catalog", "info", tmp_path / "hnsw", "--json").stdout)
    assert info["index"] == "hnsw" and info["verification_features"] == 0
    photos = [f"demo/data/{q['image']}" for q in demo_rows("queries.csv")[:4]]
    exact = [json.loads(x)["results"] for x in run("search", demo_catalogue, *photos, "--json").stdout.splitlines()]
    approx = [json.loads(x)["results"] for x in run("search", tmp_path / "hnsw", *photos, "--json").stdout.splitlines()]
    assert [[r["id"] for r in a] for a in approx] == [[r["id"] for r in e] for e in exact]
    no_features = run("search", tmp_path / "hnsw", photos[0], "--verify", check=False)
    assert no_features.returncode == 1 and "no local features" in no_features.stderr

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
        assert res[0]["id"] == q["coin_id"] and -1 <= res[0]["score"] <= 1
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

"""Archives at scale: removing entries, an index chosen by size, builds in worker processes, and a build killed
part-way then resumed to the catalogue an unstopped build makes. Real photos, real SQLite, faiss and processes."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from conftest import demo_rows, write_manifest
from coinmatch import Catalogue
from coinmatch.catalog import index as vindex
from coinmatch.catalog.build import building_folder, build_catalogue
from coinmatch.catalog.folders import CatalogueError
from coinmatch.catalog.store import Catalogue as Store

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).with_name("coinmatch"))


def manifest_of(tmp_path: Path, demo_dir: Path, rows: list[dict], name: str = "catalogue.csv") -> Path:
    return write_manifest(tmp_path / name, [{"image": str(demo_dir / r["image"]), "id": r["id"],
                                             "denomination": r["denomination"]} for r in rows])


def table_rows(root: Path, table: str) -> set[int]:
    with sqlite3.connect(root / "catalog.sqlite") as db:
        return {r[0] for r in db.execute(f"SELECT row FROM {table}")}


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    """Running (not gone, and not a zombie waiting for its parent to read its end)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def snapshot(root: Path, queries: list[Path]) -> dict:
    """What a catalogue holds and answers: entries in order with their records, each row's entry and vector, and
    the top five of each query."""
    with Store.open(root) as store:
        entries = store.db.execute("SELECT id, seq, metadata FROM entries ORDER BY seq").fetchall()
        rows = store.row_entries()
        vectors = store.vectors(list(rows))
        angles = store.angle_vectors(list(rows)) if store.has_angles() else None
    with Catalogue.open(root) as cat:
        answers = [[(m.id, round(m.score, 4)) for m in cat.search(q, top_k=5).matches] for q in queries]
    return {"entries": entries, "rows": rows, "vectors": vectors, "angles": angles, "answers": answers}


def test_remove_takes_entries_out_everywhere_and_adding_after_keeps_rows_apart(tmp_path, demo_dir,
                                                                             four_angle_model, pair_paths):
    rows = demo_rows("catalogue.csv")
    by_id = {r["id"]: r for r in rows}
    paired = [c for _, _, c in pair_paths[:3]]
    chosen = [by_id[c] for c in paired] + [r for r in rows if r["id"] not in paired][:7]
    root = tmp_path / "cat"
    Catalogue.build(root, manifest_of(tmp_path, demo_dir, chosen), model=four_angle_model, workers=0).close()
    with Store.open(root) as store:
        kept_vectors = store.vectors([3, 4, 5])
        thumbs = {r: store.images([r])[0].thumb for r in store.rows()}
    gone = paired[:2]
    with Catalogue.open(root) as cat:
        with pytest.raises(CatalogueError, match="no entry 'no-such-coin'; nothing was removed"):
            cat.remove(gone[0], "no-such-coin")
        assert len(cat) == 10
        info = cat.remove(*gone)
        assert info["removed"] == 2 and info["entries"] == 8 and info["images"] == 8
        for query, _, coin in pair_paths[:2]:  # each removed coin's own catalogue photo: never found again
            assert coin not in [m.id for m in cat.search(query, top_k=8).matches]
        assert cat.search(pair_paths[2][0], top_k=1).matches[0].id == paired[2]
    for table in ("images", "vectors", "features", "angles"):
        assert table_rows(root, table) == set(range(2, 10)), table
    assert not (root / thumbs[0]).exists() and (root / thumbs[2]).exists()

    # the same coins again, and a new one: new rows after every row ever given, the old vectors untouched
    more = manifest_of(tmp_path, demo_dir, [by_id[c] for c in gone] + [r for r in rows if r["id"] not in paired][7:8],
                       "more.csv")
    with Catalogue.open(root) as cat:
        info = cat.add(more, workers=0)
        assert info["entries"] == 11
        for query, _, coin in pair_paths[:2]:
            assert cat.search(query, top_k=1).matches[0].id == coin
    with Store.open(root) as store:
        assert sorted(store.rows()) == [*range(2, 10), 10, 11, 12]
        assert np.array_equal(store.vectors([3, 4, 5]), kept_vectors)
        assert store.index.ntotal == 11
        for r in store.rows():  # the index holds each row's own stored vector
            assert np.allclose(store.index.reconstruct(r), store.vectors([r])[0])


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_remove_from_every_kind_of_index(tmp_path, small_manifest, pair_paths, kind):
    root = tmp_path / kind
    info = build_catalogue(root, small_manifest, progress=False, index=kind, workers=0)
    # too few vectors to train product quantisation: an exact index until there are
    assert info["index"] == ("flat" if kind == "ivfpq" else kind) and info["index_setting"] == kind
    first = demo_rows("catalogue.csv")[0]
    photo = small_manifest.parent / "imgs" / Path(first["image"]).name
    with Catalogue.open(root) as cat:
        assert cat.search(photo, top_k=1).matches[0].id == first["id"]
        assert cat.remove(first["id"])["entries"] == 7
        assert first["id"] not in [m.id for m in cat.search(photo, top_k=7).matches]


def test_the_index_grows_into_another_kind_as_the_catalogue_grows(tmp_path, demo_dir, monkeypatch):
    rows = demo_rows("catalogue.csv")
    monkeypatch.setattr(vindex, "FLAT_UP_TO", 6)
    build_catalogue(tmp_path / "auto", manifest_of(tmp_path, demo_dir, rows[:5]), progress=False, workers=0)
    build_catalogue(tmp_path / "exact", manifest_of(tmp_path, demo_dir, rows[:9], "all.csv"), progress=False,
                    index="flat", workers=0)
    with Catalogue.open(tmp_path / "auto") as cat:
        assert cat.info()["index"] == "flat"
        info = cat.add(manifest_of(tmp_path, demo_dir, rows[5:9], "more.csv"), workers=0)
        assert info["index"] == "hnsw" and info["index_setting"] == "auto" and info["images"] == 9
    with Catalogue.open(tmp_path / "auto") as a, Catalogue.open(tmp_path / "exact") as b:
        for q in demo_rows("queries.csv")[:6]:
            ra, rb = a.search(demo_dir / q["image"], top_k=5), b.search(demo_dir / q["image"], top_k=5)
            assert [(m.id, round(m.score, 5)) for m in ra.matches] == [(m.id, round(m.score, 5)) for m in rb.matches]


def test_ivfpq_shortlist_is_reranked_by_the_exact_vectors():
    """Clustered vectors (as catalogue vectors are: many coins of a few types): the scores given are the exact
    inner products, and the ten nearest are nearly all the exact search's."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 64)).astype(np.float32)
    vectors = centres[rng.integers(0, 200, 30_000)] + 0.35 * rng.normal(size=(30_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = np.arange(30_000) * 3 + 7  # rows need not be positions
    index = vindex.make("ivfpq", 64, rows, vectors)
    assert vindex.kind_of(index) == "ivfpq" and not vindex.exact(index)
    by_row = dict(zip(rows.tolist(), vectors))
    queries = vectors[:50] + 0.05 * rng.normal(size=(50, 64)).astype(np.float32)
    scores, found = vindex.search(index, queries, 10, lambda rs: np.stack([by_row[r] for r in rs]))
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    for q, s, f, t in zip(queries, scores, found, truth):
        assert np.allclose(s, np.stack([by_row[int(r)] for r in f]) @ q, atol=1e-5)
        assert np.all(np.diff(s) <= 1e-6)
    recall = np.mean([len(set(f.tolist()) & set(rows[t].tolist())) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.9


def test_a_killed_build_resumes_to_the_catalogue_an_unstopped_build_makes(tmp_path, demo_dir, pair_paths):
    """A real `coinmatch catalog build` (worker processes, chunks of 8 faces) is killed with SIGKILL once two
    chunks are stored: the catalogue already there is still whole and readable; --resume then ends with the
    same entries, rows, vectors and answers as a build never stopped."""
    rows = demo_rows("catalogue.csv")
    manifest = manifest_of(tmp_path, demo_dir, rows)
    target = tmp_path / "cat"
    build_catalogue(target, manifest_of(tmp_path, demo_dir, rows[:3], "old.csv"), progress=False, workers=0)
    old = snapshot(target, [pair_paths[0][1]])
    code = ("import sys, coinmatch.catalog.build as b; b.CHUNK = 8; from coinmatch.cli import app; "
            "sys.argv = ['coinmatch'] + sys.argv[1:]; app()")
    args = [sys.executable, "-c", code, "catalog", "build", str(target), str(manifest), "--workers", "2", "--json"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    work = building_folder(target)
    stored = 0
    while proc.poll() is None and stored < 2:
        time.sleep(0.05)
        try:
            with sqlite3.connect(work / "catalog.sqlite") as db:
                found = db.execute("SELECT value FROM meta WHERE key='build_chunks'").fetchone()
            stored = int(found[0]) if found else 0
        except sqlite3.Error:
            stored = 0
    assert proc.poll() is None, "the build ended before it could be killed"
    workers = children(proc.pid)
    assert len(workers) >= 2  # the worker processes (and multiprocessing's resource tracker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(600):  # the workers die with the build rather than live on as orphans
        if not any(alive(p) for p in workers):
            break
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)
    assert snapshot(target, [pair_paths[0][1]])["answers"] == old["answers"]  # the last good catalogue
    with Store.open(target) as store:
        assert store.n_entries() == 3

    resumed = subprocess.run([*args, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not work.exists()
    whole = tmp_path / "whole"
    done = subprocess.run([*args[:5], str(whole), str(manifest), "--workers", "0", "--json"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    queries = [p for _, p, _ in pair_paths[:8]]
    a, b = snapshot(target, queries), snapshot(whole, queries)
    assert a["entries"] == b["entries"] and len(a["entries"]) == 60
    assert a["rows"] == b["rows"]
    assert np.allclose(a["vectors"], b["vectors"], atol=1e-5)
    assert a["answers"] == b["answers"]


def test_resume_refuses_another_manifest_and_a_second_build_at_once(tmp_path, demo_dir, monkeypatch):
    rows = demo_rows("catalogue.csv")
    manifest = manifest_of(tmp_path, demo_dir, rows[:12])
    target = tmp_path / "cat"
    monkeypatch.setattr("coinmatch.catalog.build.CHUNK", 4)

    def stop(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # stopped after every chunk is stored, before the index is made
        m.setattr(Store, "reindex", stop)
        with pytest.raises(KeyboardInterrupt):
            build_catalogue(target, manifest, progress=False, workers=0)
    assert not target.exists() and building_folder(target).exists()
    with pytest.raises(CatalogueError, match="another manifest, model or options"):
        build_catalogue(target, manifest_of(tmp_path, demo_dir, rows[:11], "other.csv"), progress=False,
                        workers=0, resume=True)
    with open(target.with_name(f".{target.name}.lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(CatalogueError, match="another build of this catalogue is running"):
            build_catalogue(target, manifest, progress=False, workers=0, resume=True)
        fcntl.flock(held, fcntl.LOCK_UN)
    info = build_catalogue(target, manifest, progress=False, workers=0, resume=True)
    assert info["entries"] == 12 and info["index"] == "flat"


def test_a_version_1_catalogue_is_upgraded_on_opening(tmp_path, small_manifest, demo_dir):
    """A catalogue as coinmatch wrote it before vectors were kept in SQLite (a plain index whose positions are the
    rows) opens, answers as before, and can then have entries removed."""
    root = tmp_path / "v1"
    build_catalogue(root, small_manifest, progress=False, workers=0)
    queries = [demo_dir / q["image"] for q in demo_rows("queries.csv")[:4]]
    before = snapshot(root, queries)
    with sqlite3.connect(root / "catalog.sqlite") as db:
        vectors = [np.frombuffer(b, np.float32) for (b,) in db.execute("SELECT vector FROM vectors ORDER BY row")]
        plain = faiss.IndexFlatIP(len(vectors[0]))
        plain.add(np.stack(vectors))
        faiss.write_index(plain, str(root / "vectors-7.faiss"))
        db.execute("DROP TABLE vectors")
        db.execute("DELETE FROM meta WHERE key IN ('index_kind', 'next_row')")
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
            ("format_version", "1"), ("index_factory", "Flat"), ("vectors_file", "vectors-7.faiss")])
    after = snapshot(root, queries)
    assert after["answers"] == before["answers"] and np.array_equal(after["vectors"], before["vectors"])
    with Catalogue.open(root) as cat:
        assert cat.info()["index"] == "flat" and cat.remove(before["entries"][0][0])["entries"] == 7


def test_catalog_remove_from_the_command_line(tmp_path, small_manifest):
    root = tmp_path / "cat"
    build_catalogue(root, small_manifest, progress=False, workers=0)
    ids = [e[0] for e in snapshot(root, [])["entries"]]
    proc = subprocess.run([BIN, "catalog", "remove", str(root), ids[0], ids[3], "--json"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert '"removed": 2' in proc.stdout and '"entries": 6' in proc.stdout
    bad = subprocess.run([BIN, "catalog", "remove", str(root), "nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "no entry 'nope'" in bad.stderr and "Traceback" not in bad.stderr

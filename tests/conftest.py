"""Shared fixtures: real coin photos (bundled demo data, and ../shared/data where present), broken files."""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "data"
SHARED = ROOT.parent / "shared" / "data"
os.environ.setdefault("COINMATCH_CACHE", str(ROOT / ".cache" / "coinmatch"))
# Most tests exercise the machinery (files, catalogues, search, verification, the CLI), not the model: they run with
# the untrained one-angle ImageNet model, 16 times cheaper than the default's 16 angles. The bundled default model
# itself, and a catalogue built with it through the CLI, are tested in test_default_model.py.
os.environ["COINMATCH_MODEL"] = "builtin:efficientnet_lite0"
# Parallel workers (pytest -n 2 on 2 cores): one thread each for ONNX Runtime and torch (and the CLI processes they
# start), rather than each fighting the other for every core.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("COINMATCH_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


from coinmatch.models.modelfile import ModelConfig  # noqa: E402 (after the cache folder is set)

FOUR_ANGLES = ModelConfig(image_size=96, grey=True, rotations=4, trained=True)  # the four_angle_model fixture's


def demo_rows(name: str) -> list[dict]:
    with open(DEMO / name, encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def pair_paths() -> list[tuple[Path, Path, str]]:
    """(catalogue photo, query photo, coin id) for each demo coin photographed twice."""
    cat = {r["id"]: DEMO / r["image"] for r in demo_rows("catalogue.csv")}
    return [(cat[q["coin_id"]], DEMO / q["image"], q["coin_id"]) for q in demo_rows("queries.csv")]


@pytest.fixture(scope="session")
def model():
    from coinmatch.models.modelfile import builtin_model

    return builtin_model()


@pytest.fixture(scope="session")
def embedder(model):
    from coinmatch.models.runtime import Embedder

    return Embedder(model)


@pytest.fixture(scope="session")
def four_angle_model(tmp_path_factory) -> Path:
    """A small grey model of four angles (96 px, ImageNet weights): one that gives angle vectors."""
    from coinmatch.models.modelfile import build_network, save_model

    path = tmp_path_factory.mktemp("model") / "four-angles.cm"
    save_model(build_network(FOUR_ANGLES).eval(), FOUR_ANGLES, path)
    return path


@pytest.fixture(scope="session")
def aligned_catalogue(tmp_path_factory, four_angle_model, demo_dir) -> Path:
    """The 60 demo catalogue photos, built with the four-angle model (local features too). Copy it to change it."""
    from coinmatch.catalog.build import build_catalogue

    root = tmp_path_factory.mktemp("cat") / "aligned"
    build_catalogue(root, demo_dir / "catalogue.csv", model=str(four_angle_model), progress=False)
    return root


def search_json(catalogue: Path, photo: Path, *flag_sets: list[str]) -> list[list[dict]]:
    """``coinmatch search CATALOGUE PHOTO --json`` once for each set of extra flags: each run's results."""
    binary = str(Path(sys.executable).with_name("coinmatch"))
    runs = [subprocess.run([binary, "search", str(catalogue), str(photo), "--json", *flags], capture_output=True,
                           text=True) for flags in flag_sets]
    assert all(r.returncode == 0 for r in runs), "".join(r.stderr for r in runs)
    return [json.loads(r.stdout)["results"] for r in runs]


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture()
def small_manifest(tmp_path, demo_dir) -> Path:
    """Eight real catalogue photos (copied) in a manifest of their own."""
    rows = demo_rows("catalogue.csv")
    chosen = rows[:5] + rows[-3:]
    (tmp_path / "imgs").mkdir()
    out = []
    for r in chosen:
        dst = tmp_path / "imgs" / Path(r["image"]).name
        shutil.copy(demo_dir / r["image"], dst)
        out.append({"image": f"imgs/{dst.name}", "id": r["id"], "denomination": r["denomination"]})
    return write_manifest(tmp_path / "catalogue.csv", out)


def png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims the given size (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture()
def broken_files(tmp_path, pair_paths) -> dict[str, Path]:
    """Real malformed files made from a real photo."""
    real = pair_paths[0][0].read_bytes()
    files = {
        "truncated": real[: len(real) // 3],
        "corrupt": real[:200] + bytes(range(256)) * 40,
        "text": b"image,id\nnot,an image\n",
        "empty": b"",
        "bomb": png_with_size(40_000, 40_000),
    }
    out = {}
    for name, data in files.items():
        p = tmp_path / f"{name}.jpg"
        p.write_bytes(data)
        out[name] = p
    return out


@pytest.fixture(scope="session")
def sales(tmp_path_factory, demo_dir) -> dict[str, Path]:
    """Two catalogues of real photos laid out as two auction sales (the sale columns are made up for the tests):
    "sale-1987" holds the demo catalogue photos of the first 12 queried coins and 12 other coins; "sale-1975" holds
    other photos of 6 of those 12 coins (the demo queries), so those six have a chain of two sales."""
    from coinmatch.catalog.build import build_catalogue

    root = tmp_path_factory.mktemp("sales")
    queried = [q["coin_id"] for q in demo_rows("queries.csv")]
    rows = demo_rows("catalogue.csv")
    first = [r for r in rows if r["id"] in queried[:12]] + [r for r in rows if r["id"] not in queried][:12]
    sale_a = [{"image": str(demo_dir / r["image"]), "id": r["id"], "type": f"euro {r['denomination']}",
               "auction": "Example Auctions", "sale": "Sale 12", "lot": str(100 + i), "date": "12 May 1987",
               "price": f"{20 + i} EUR"} for i, r in enumerate(first)]
    sale_b = [{"image": str(demo_dir / q["image"]), "id": f"B-{q['coin_id']}", "type": f"euro {q['denomination']}",
               "auction": "Other House", "sale": "Sale 3", "lot": str(i + 1), "date": "1975", "price": ""}
              for i, q in enumerate(demo_rows("queries.csv")[:6])]
    out = {}
    for name, manifest in (("sale-1987", sale_a), ("sale-1975", sale_b)):
        build_catalogue(root / name, write_manifest(root / f"{name}.csv", manifest), progress=False)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def sold_photos(demo_dir) -> dict[str, list[Path]]:
    """The demo query photos by what the ``sales`` catalogues hold: "both" (their coins are in both sales), "one"
    (in sale-1987 only) and "none" (coins in neither)."""
    queries = demo_rows("queries.csv")
    return {"both": [demo_dir / q["image"] for q in queries[:6]],
            "one": [demo_dir / q["image"] for q in queries[6:12]],
            "none": [demo_dir / q["image"] for q in queries[12:]]}

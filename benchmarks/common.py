"""Shared set-up of the benchmarks: the euro-coins real pairs protocol.

Catalogue: every `_a` crop of pairs.csv plus every crop of pair-denominations.csv (distractors of the
same two types). Queries: every `_b` crop, as photographed and catalogue-like (grey, random rotation,
128 px, seed 0).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COINMATCH_DATA", ROOT.parent / "shared" / "data"))
EURO = DATA / "euro-coins"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "out" / "benchmarks"


def pairs_manifests() -> tuple[Path, Path]:
    """Write the catalogue and query manifests of the real-pairs protocol; return their paths."""
    if not EURO.exists():
        sys.exit(f"{EURO} not found: set COINMATCH_DATA to the folder holding euro-coins/")
    WORK.mkdir(parents=True, exist_ok=True)
    pairs = list(csv.DictReader(open(EURO / "pairs.csv", encoding="utf-8")))
    distractors = list(csv.DictReader(open(EURO / "pair-denominations.csv", encoding="utf-8")))
    cat, queries = WORK / "pairs-catalogue.csv", WORK / "pairs-queries.csv"
    with open(cat, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "id", "denomination", "role"])
        for r in pairs:
            if r["image"].endswith("_a.jpg"):
                w.writerow([str(EURO / r["image"]), r["coin_id"], r["denomination"], "pair"])
        for r in distractors:
            w.writerow([str(EURO / r["image"]), "d:" + r["image"], r["denomination"], "distractor"])
    with open(queries, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "coin_id", "denomination"])
        for r in pairs:
            if r["image"].endswith("_b.jpg"):
                w.writerow([str(EURO / r["image"]), r["coin_id"], r["denomination"]])
    return cat, queries


def search_crop(rgb: np.ndarray) -> np.ndarray:
    """A photo's coin crop as search makes it: the coin found, cropped square with its background."""
    from coinmatch.prepare import prepare_array

    return prepare_array(rgb).crop


def euro_crops(crop=search_crop) -> tuple[np.ndarray, list[np.ndarray], list]:
    """The real-pairs catalogue as coin crops: (entry ids, crops, the query list of evaluation.protocol).
    ``crop``: RGB photo -> coin crop (default: search's)."""
    from coinmatch.evaluation.protocol import read_queries
    from coinmatch.images import load_rgb

    cat_csv, q_csv = pairs_manifests()
    with open(cat_csv, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    crops = [crop(load_rgb(r["image"])) for r in rows]
    return np.array([r["id"] for r in rows]), crops, read_queries(q_csv, "coin_id")


def training_views(size: int, limit: int, n_train: int, n_views: int = 1) -> dict[str, list[np.ndarray]]:
    """The sets of the frozen-descriptor studies, at ``size`` px: the training loop's held-out coins in its
    two fixed augmented views (val_a, val_b), and ``n_train`` training coins (seed 1; OCRE, first ``limit``
    rows, + euro singles) as they are (x) and in ``n_views`` augmented views each (y, seed 0, view-major:
    view 1 of every coin, then view 2, ...)."""
    from coinmatch.training.augment import augment
    from coinmatch.training.cache import TrainingCache, cache_size, load_cache
    from coinmatch.training.loop import TrainConfig, split_validation
    from coinmatch.training.validate import fixed_views

    manifests = ((DATA / "ancient-coins" / "ocre.csv", limit), (EURO / "singles.csv", None))
    # the training loop's cache for 224 px, so its disk cache serves every size here
    cache = TrainingCache.merge([load_cache(m, cache_size(224), "denomination", limit=n) for m, n in manifests])
    train, val = split_validation(cache, TrainConfig.val_fraction, TrainConfig.val_max, TrainConfig.seed)
    train = train.subset(np.sort(np.random.default_rng(1).permutation(len(train))[:n_train]))
    va, vb = fixed_views(val, size)
    rng = np.random.default_rng(0)
    return {"val_a": list(va), "val_b": list(vb), "x": train.plain(size),
            "y": [augment(im, rng, size) for _ in range(n_views) for im in train.images]}


def study_arguments(description: str | None, name: str) -> argparse.ArgumentParser:
    """The options the frozen-descriptor studies share (their sets: see training_views)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--limit", type=int, default=2000, help="OCRE rows read (the training cache's --limit)")
    ap.add_argument("--train", type=int, default=1300, help="training coins drawn from them (seed 1)")
    ap.add_argument("--reuse", action="store_true", help="read the descriptors of an earlier run back")
    ap.add_argument("--name", default=name, help="results file name in benchmarks/results/")
    return ap


def stored_descriptors(path: Path, reuse: bool, extract) -> tuple[dict[str, np.ndarray], str]:
    """``extract()``'s arrays, kept at ``path``; read back from there instead when ``reuse`` and it exists.
    Returns them and how they were had ("read back" or "embedded in N s")."""
    if reuse and path.exists():
        return dict(np.load(path)), "read back"
    t = time.perf_counter()
    d = extract()
    np.savez(path, **d)
    return d, f"embedded in {time.perf_counter() - t:.0f} s"


def study_embedder(module, config, name: str):
    """The package's Embedder (ONNX Runtime, checked against torch) over a study's own network ``module``,
    which pools its angles itself and gives no angle vectors: the export is told one angle, and the batch
    holds 2 photos, as the models of 16 angles do. Exported afresh to out/benchmarks/NAME.onnx; an export that
    fails is an error, not a silent fall back to torch (about half the speed on 2 cores)."""
    from dataclasses import replace

    from coinmatch.models.modelfile import LoadedModel, fingerprint_of
    from coinmatch.models.runtime import Embedder

    single = replace(config, rotations=1)
    WORK.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(LoadedModel(module, single, fingerprint_of(module, config), name), device="cpu",
                        batch_size=max(1, 32 // int(config.rotations)), onnx_file=WORK / f"{name}.onnx")
    if embedder.backend != "onnx":
        raise RuntimeError(f"{name}: the study's network did not export to ONNX (see the warning above)")
    return embedder


def untrained_invariant_model(size: int = 224) -> Path:
    """The untrained Lite0, grey, rotation pooled over 16 angles, written as a model file in WORK."""
    from coinmatch.models.modelfile import ModelConfig, build_network, save_model

    config = ModelConfig(grey=True, rotations=16, image_size=size)
    path = WORK / f"untrained-grey-rot16-{size}.cm"
    WORK.mkdir(parents=True, exist_ok=True)
    save_model(build_network(config).eval(), config, path)
    return path


def unit(a: np.ndarray) -> np.ndarray:
    """Each row (the last axis) scaled to unit length."""
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


# the columns every frozen-descriptor study reports: held-out augmented P@1 and the euro pairs' recall@1
SCORE_COLUMNS = [("val P@1", "val P@1", "8.3f"), ("photo", "photo R@1", "10.3f"),
                 ("catalogue-like", "cat-like R@1", "13.3f")]


# the scoring columns of a retrieval study's rows (aligned.scores, and the queries not ranked first)
SCORE_COLUMNS = [("R@1", "R@1", "6.3f"), ("R@5", "R@5", "6.3f"), ("AUC", "ROC AUC", "8.3f"),
                 ("TPR@1%", "TPR@1%FPR", "10.3f"), ("misses", "not first (rank)", "<")]


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table: columns are (key, header, format spec such as '<70', '6.3f' or '>10'). A column is
    as wide as its spec or as its longest cell, whichever is wider, so a long label never shifts its row."""
    def spec_width(spec: str) -> int:
        return int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)

    specs = [spec for _, _, spec in columns]
    table = [[header for _, header, _ in columns]] + [[format(r[key], spec) for key, _, spec in columns] for r in rows]
    widths = [max([spec_width(spec)] + [len(row[i]) for row in table]) for i, spec in enumerate(specs)]
    aligns = [spec[0] if spec[0] in "<>^" else ">" for spec in specs]
    return "\n".join(" ".join(format(cell, f"{a}{w}") for cell, a, w in zip(row, aligns, widths)) for row in table)


def save_results(name: str, rows: list[dict], text: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    (RESULTS / f"{name}.json").write_text(json.dumps({"date": stamp, "rows": rows}, indent=2))
    (RESULTS / f"{name}.txt").write_text(f"{name} ({stamp}, {os.cpu_count()} CPUs)\n{text}\n")
    print(f"\nwritten to {RESULTS / name}.txt and .json")

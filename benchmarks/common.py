"""Shared set-up of the benchmarks: the euro-coins real pairs protocol.

Catalogue: every `_a` crop of pairs.csv plus every crop of pair-denominations.csv (distractors of the
same two types). Queries: every `_b` crop, as photographed and catalogue-like (grey, random rotation,
128 px, seed 0).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path


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


def untrained_invariant_model(size: int = 224) -> Path:
    """The untrained Lite0, grey, rotation pooled over 16 angles, written as a model file in WORK."""
    from coinmatch.models.modelfile import ModelConfig, build_network, save_model

    config = ModelConfig(grey=True, rotations=16, image_size=size)
    path = WORK / f"untrained-grey-rot16-{size}.cm"
    WORK.mkdir(parents=True, exist_ok=True)
    save_model(build_network(config).eval(), config, path)
    return path


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

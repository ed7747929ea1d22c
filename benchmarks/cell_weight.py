"""What weight should search give a model's cell score? Chosen on one real test, scored on the other.

    .venv/bin/python benchmarks/cell_weight.py --model runs/recipe-cells.cm [--seeds 10]
        [--weights 0 0.25 0.5 0.75 1 1.5 2 3] [--reuse] [--name cell-weight]

Search scores a candidate (cosine + aligned) / 2 + w x cells - density / 2, with w = search.CELL_WEIGHT (1, not
tuned when the cells were added). On both real same-coin tests (the euro pairs and the euro singles' mined pairs:
benchmarks/seeds.py, whose vectors this reads back with ``--reuse``), every entry scored as search scores it, this
reports for each weight w: recall@1 as photographed, catalogue-like over the seeds' draws of the angles (mean, 95 %
bootstrap interval over the queries) and the TPR at 1 % FPR of both, with the paired difference from search's
weight. Then each test's weight is chosen on the *other* test (the highest catalogue-like mean that loses no
photographed query against w = 0; a tie goes to search's kernel, then to the weight nearer search's), and the
held-out test is scored at it: two tests, each kept out of its own choice. w = 0 is the recipe without cells (the
same vectors).

``--kernels mean selective`` also sweeps another way to sum the cells: search's is the mean cosine of the two
coins' cells ("mean"); "selective" is the mean over the cells of sigma(u) = u^3 where u > 0, else 0: the selective
match kernel of ASMK (Tolias, Avrithis and Jegou, ICCV 2013, with its alpha = 3 and tau = 0), which weighs a
few cells that match closely (a scratch, a flaw of the die) above many that match loosely (the design every coin
of the type shares). The query is turned to its best angle under each kernel, and the kernel is chosen with the
weight.
"""

from __future__ import annotations

import argparse

import numpy as np

from common import WORK, format_table, save_results
from density import catalogue_density
from seeds import TESTS, cell_score_key, difference, query_crops, study, vectors
from coinmatch.models.runtime import Embedder
from coinmatch.search import CELL_WEIGHT

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
KERNELS = ("mean", "selective")
ALPHA = 3.0  # ASMK's selectivity exponent


def selective_similarity(queries: np.ndarray, entries: np.ndarray, dim: int, alpha: float = ALPHA) -> np.ndarray:
    """Q x C: the best, over the query's angles, of the mean over the K cells of max(u, 0)^alpha, u the cosine of
    the two coins' cells at one place (queries Q x A x K dim, entries C x K dim, each cell a unit vector over the
    square root of K, as the model gives them)."""
    q = queries.astype(np.float32)
    k = q.shape[2] // dim
    q = q.reshape(len(q), q.shape[1], k, dim) * np.sqrt(k)
    e = entries.astype(np.float32).reshape(len(entries), k, dim) * np.sqrt(k)
    best = np.full((len(q), len(e)), -np.inf, dtype=np.float32)
    for a in range(q.shape[1]):
        total = np.zeros_like(best)
        for cell in range(k):
            u = q[:, a, cell] @ e[:, cell].T
            total += np.maximum(u, 0) ** alpha
        np.maximum(best, total / k, out=best)
    return best


def sweep(model: str, test: str, seeds: int, weights: list[float], kernels: list[str], reuse: bool
          ) -> dict[tuple[str, float], tuple[dict, dict]]:
    """Each (kernel, weight)'s rows and per-query hits (seeds.study) on one test."""
    sets = query_crops(test, seeds)
    embedder = Embedder(model)
    d = vectors(embedder, sets, test, seeds, reuse)
    if d.get("cat:c") is None:
        raise SystemExit(f"{model}: no cell descriptors (train it with --cells, or benchmarks/add_cells.py)")
    d["density"] = catalogue_density(d)
    out = {}
    for kernel in kernels:
        scored = dict(d)
        if kernel == "selective":  # seeds.ranking_score takes a form's cell score from here when it is there
            for form in sets["crops"]:
                scored[cell_score_key(form)] = selective_similarity(d[f"{form}:c"], d["cat:c"], embedder.cells)
        for w in weights:
            if w or kernel == kernels[0]:  # weight 0 is the same ranking whatever the kernel
                out[kernel, w] = study(scored, sets, seeds, cell_weight=w)
    return out


def chosen(results: dict[tuple[str, float], tuple[dict, dict]], search: tuple[str, float]) -> tuple[str, float]:
    """The (kernel, weight) with the best catalogue-like mean among those that lose no photographed query against
    weight 0; a tie goes to search's kernel, then to the weight nearest search's."""
    floor = min(results[key][0]["photo"]["mean"] for key in results if key[1] == 0)
    allowed = [key for key, (found, _) in results.items() if found["photo"]["mean"] >= floor]
    return max(allowed, key=lambda key: (round(results[key][0]["like"]["mean"], 6), key[0] == search[0],
                                         -abs(key[1] - search[1])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model file with cell descriptors")
    ap.add_argument("--seeds", type=int, default=10, help="draws of the catalogue-like angles (seeds 0 .. N-1)")
    ap.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    ap.add_argument("--kernels", nargs="+", choices=KERNELS, default=["mean"],
                    help="how the cells are summed: search's mean cosine, or ASMK's selective kernel too")
    ap.add_argument("--reuse", action="store_true", help="read the vectors of an earlier run (this or seeds.py) back")
    ap.add_argument("--name", default="cell-weight", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    weights = sorted(set(args.weights) | {0.0, CELL_WEIGHT})
    kernels = ["mean"] + [k for k in args.kernels if k != "mean"]  # search's first: it holds weight 0
    search = ("mean", CELL_WEIGHT)
    WORK.mkdir(parents=True, exist_ok=True)
    results = {test: sweep(args.model, test, args.seeds, weights, kernels, args.reuse) for test in TESTS}
    rows = []
    for test, by_key in results.items():
        base = by_key[search][1]
        for (kernel, w), (found, hits) in by_key.items():
            for key, r in found.items():
                rows.append({**r, "test": TESTS[test], "kernel": kernel if w else "(none)", "weight": w,
                             "vs": "" if (kernel, w) == search else difference(hits[key], base[key])})
    columns = [("test", "test", "<16"), ("kernel", "cells", "<10"), ("weight", "weight", "6.2f"),
               ("form", "queries", "<26"), ("mean", "R@1 mean", "8.3f"), ("interval", "95 % interval", "<16"),
               ("vs", "paired difference vs search", "<27"), ("TPR@1%", "TPR@1%FPR", "9.3f"),
               ("weak", "first at under half the seeds (share)", "<")]
    held = []
    for test, other in zip(TESTS, reversed(list(TESTS))):
        pick = chosen(results[other], search)
        found, hits = results[test][pick]
        for key in ("photo", "like"):
            held.append({"test": TESTS[test], "chosen on": TESTS[other], "kernel": pick[0], "weight": pick[1],
                         "form": found[key]["form"], "mean": found[key]["mean"], "interval": found[key]["interval"],
                         "vs search": difference(hits[key], results[test][search][1][key]),
                         "vs none": difference(hits[key], results[test]["mean", 0.0][1][key]),
                         "TPR@1%": found[key]["TPR@1%"]})
    held_columns = [("test", "held-out test", "<16"), ("chosen on", "chosen on", "<16"), ("kernel", "cells", "<10"),
                    ("weight", "weight", "6.2f"), ("form", "queries", "<26"), ("mean", "R@1 mean", "8.3f"),
                    ("interval", "95 % interval", "<16"), ("vs search", "vs search (mean, 1)", "<24"),
                    ("vs none", "vs no cells", "<24"), ("TPR@1%", "TPR@1%FPR", "9.3f")]
    text = (f"model {args.model}; every entry scored as search scores it, (cosine + aligned) / 2 + weight x cells - "
            f"density / 2, search's cells the mean cosine at weight {CELL_WEIGHT:g}; catalogue-like over "
            f"{args.seeds} draws of the angles\n" + format_table(rows, columns)
            + "\n\neach test at the cells and weight chosen on the other (the best catalogue-like mean losing no "
              "photographed query against no cells)\n" + format_table(held, held_columns))
    print(text)
    save_results(args.name, rows + [{**r, "held out": True} for r in held], text)


if __name__ == "__main__":
    main()

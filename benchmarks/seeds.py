"""How firmly does a catalogue-like recall@1 stand: over many draws of the queries' angles, and over the queries?

    .venv/bin/python benchmarks/seeds.py --models default runs/recipe.cm [--seeds 10] [--verify 20] [--reuse] [--name seeds]

The protocol's catalogue-like queries are turned by random angles drawn with seed 0 (evaluation.protocol), and the
real tests hold few queries (84 euro pairs, 56 singles' pairs), so one query is 1.2 or 1.8 points of recall@1 and a
figure such as 0.940 says little on its own about a model, or about the gap between two models. On both real
same-coin tests (the euro pairs, benchmarks/common.py; the euro singles' mined pairs, benchmarks/singles_pairs.py,
the same sets), every entry scored by search's score less half its local density (benchmarks/density.py), this study
reports for each model:
  - photographed: recall@1 and a 95 % bootstrap interval over the queries;
  - catalogue-like, with the angles drawn with seeds 0 .. N-1 (seed 0 is the protocol's figure): recall@1 at seed 0,
    its mean, least and most over the seeds, a 95 % bootstrap interval of the mean over the queries (each query's
    share of seeds at which it comes first, the queries drawn with replacement), the mean TPR at 1 % FPR, and the
    queries first at fewer than half the seeds;
  - for each model after the first, the paired difference from the first model, with its bootstrap interval: a
    gap whose interval holds 0 is not shown by these queries.
A model with cell descriptors (``train --cells``) is scored as search scores it, its cell score added (the query at
its 16 angles against each entry as it lies: align.cell_similarity), and also without them and by the cells alone;
each of those rows gives its paired difference from the same ranking without cells.
``--verify N`` also scores every query as ``search --verify --candidates N`` ranks: its first N entries verified
(verify.py: RootSIFT under a similarity fit about the coin's centre) and re-ranked by the embedding's score plus the
inliers' share (verify.combined_score); the true coin, when outside them, is verified too for its open-set score
(evaluation.run's rule), and the best other coin is taken from the N. RANSAC is seeded, so reruns agree.
The coin finder finds and crops every query as search does. The vectors (ONNX Runtime) are kept in out/benchmarks/
(``--reuse``); about 15 minutes on 2 cores for a model of 16 angles at 10 seeds, a few for the untrained default.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from aligned import true_and_best_other
from common import WORK, format_table, save_results, stored_descriptors
from density import catalogue_density
from query_framing import test_sets
from query_scales import score
from coinmatch import verify
from coinmatch.align import cell_similarity
from coinmatch.evaluation import metrics
from coinmatch.evaluation.protocol import catalogue_like_angles, catalogue_like_at
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_array
from coinmatch.search import CELL_WEIGHT, DENSITY_WEIGHT
from coinmatch.segment import FINDER_VERSION

TESTS = {"euro": "euro pairs (84)", "singles": "singles pairs"}


def query_crops(test: str, seeds: int) -> dict:
    """A test's catalogue crops, its photographed query crops and, per seed, its catalogue-like query crops (each
    coin found and cropped as search does), each query's catalogue index, and the query names."""
    cat, photos, true, names = test_sets(TESTS[test])
    t = time.perf_counter()
    crops = {"photo": [prepare_array(im).crop for im in photos]}
    for s in range(seeds):
        crops[f"seed {s}"] = [prepare_array(catalogue_like_at(im, a)).crop
                              for im, a in zip(photos, catalogue_like_angles(len(photos), seed=s))]
    print(f"{TESTS[test]}: {len(photos)} queries found at {seeds} seeds in {time.perf_counter() - t:.0f} s", flush=True)
    return {"cat": cat, "crops": crops, "true": true, "names": names}


def local_features(sets: dict) -> dict[str, list[verify.LocalFeatures]]:
    """RootSIFT features of every catalogue and query crop, as search extracts and stores them."""
    t = time.perf_counter()
    out = {key: [verify.extract(c) for c in crops] for key, crops in {"cat": sets["cat"], **sets["crops"]}.items()}
    print(f"local features in {time.perf_counter() - t:.0f} s", flush=True)
    return out


def vectors(embedder: Embedder, sets: dict, test: str, seeds: int, reuse: bool) -> dict[str, np.ndarray]:
    """Pooled (v) and angle (a, none for a model of one angle) vectors of a test's catalogue and queries, and a
    model's cell descriptors (c: the catalogue's as each coin lies, the queries' at every angle), from one pass."""
    path = WORK / f"seeds-{test}-{seeds}-{embedder.fingerprint[:12]}-finder{FINDER_VERSION}.npz"

    def extract() -> dict[str, np.ndarray]:
        out = {}
        for key, crops in {"cat": sets["cat"], **sets["crops"]}.items():
            v, a, c = embedder.embed_with_cells(crops)
            out[f"{key}:v"] = v
            if a is not None:
                out[f"{key}:a"] = a
            if c is not None:
                out[f"{key}:c"] = c[:, 0] if key == "cat" else c.astype(np.float16)
        return out

    d, how = stored_descriptors(path, reuse, extract)
    print(f"{TESTS[test]}, {embedder.source}: vectors {how}", flush=True)
    return {k: d.get(k) for k in {f"{key}:{x}" for key in ("cat", *sets["crops"]) for x in "vac"}}


CELL_MODES = ("search", "no cells", "cells alone")  # a cell model's scores: as search (cells added), without, alone


def cell_score_key(form: str) -> str:
    """Where :func:`cell_scores` keeps a query form's cell score in the vectors' dict."""
    return f"{form}:cell score"


def cell_scores(d: dict[str, np.ndarray], form: str) -> np.ndarray:
    """Queries x entries: a query form's cell score against every entry (align.cell_similarity), computed once and
    kept in ``d`` (where a study may put another cell score: benchmarks/cell_weight.py)."""
    key = cell_score_key(form)
    if key not in d:
        d[key] = cell_similarity(d[f"{form}:c"].astype(np.float32), d["cat:c"])
    return d[key]


def ranking_score(d: dict[str, np.ndarray], form: str, mode: str = "search",
                  cell_weight: float = CELL_WEIGHT) -> np.ndarray:
    """Queries x entries: search's score less local density (``d["density"]``), with a cell model's cell score
    added at ``cell_weight`` ("search"), or not ("no cells"), or the cell score alone ("cells alone")."""
    with_cells = d.get("cat:c") is not None and mode != "no cells"  # the cell score only where it is used
    cells = cell_scores(d, form) if with_cells else None
    if mode == "cells alone":
        return cells
    S = score(d, form, "cat") - DENSITY_WEIGHT * d["density"][None, :]
    return S if cells is None else S + cell_weight * cells


def outcomes(d: dict[str, np.ndarray], true: np.ndarray, form: str, features: dict | None = None,
             candidates: int = 0, mode: str = "search", cell_weight: float = CELL_WEIGHT) -> tuple[np.ndarray, float]:
    """Whether each query's coin comes first, and the TPR at 1 % FPR, by search's score (:func:`ranking_score`);
    with ``features`` and ``candidates``, by that score with the first ``candidates`` verified, as search ranks
    them."""
    S = ranking_score(d, form, mode, cell_weight)
    pos, neg = true_and_best_other(S, true)
    if features is None or candidates <= 0:
        return pos > neg, metrics.tpr_at_fpr(pos, neg, 0.01)
    cv2.setRNGSeed(0)
    cat, queries = features["cat"], features[form]
    shortlisted = np.ones(len(S), bool)
    for i in range(len(S)):
        head = np.argsort(-S[i])[:candidates]
        if true[i] not in head:  # verified too, for its open-set score only: search would not show it
            head = np.r_[head, true[i]]
        checked = verify.match_many(queries[i], [cat[j] for j in head])
        combined = np.array([verify.combined_score(S[i, j], v.inliers) for j, v in zip(head, checked)])
        shown = head[:candidates]
        pos[i] = combined[list(head).index(true[i])]
        neg[i] = max((c for j, c in zip(shown, combined) if j != true[i]), default=-np.inf)
        shortlisted[i] = true[i] in shown  # outside the shortlist it is never first, whatever it scores
    return (pos > neg) & shortlisted, metrics.tpr_at_fpr(pos, neg, 0.01)


def interval(values: np.ndarray) -> str:
    lo, hi = metrics.bootstrap_interval(values)
    return f"[{lo:.3f}, {hi:.3f}]"


def difference(a: np.ndarray, b: np.ndarray) -> str:
    """The paired difference of two rankings' per-query hits, with its bootstrap interval."""
    diff = a - b
    return f"{diff.mean():+.3f} {interval(diff)}"


def study(d: dict[str, np.ndarray], sets: dict, seeds: int, features: dict | None = None,
          candidates: int = 0, mode: str = "search", cell_weight: float = CELL_WEIGHT) -> tuple[dict, dict]:
    """Rows for the photographed and the catalogue-like queries, and the per-query hits behind them."""
    true, names = sets["true"], sets["names"]
    first, tpr_photo = outcomes(d, true, "photo", features, candidates, mode, cell_weight)
    hits, tprs = zip(*(outcomes(d, true, f"seed {s}", features, candidates, mode, cell_weight)
                       for s in range(seeds)))
    hits = np.array(hits).T.astype(float)  # queries x seeds
    per_seed = hits.mean(axis=0)
    share = hits.mean(axis=1)
    weak = np.flatnonzero(share < 0.5)
    if len(names) and len(weak) <= 12:
        weak_text = ", ".join(f"{names[i].removesuffix('_b.jpg')} {share[i]:.1f}" for i in weak[np.argsort(share[weak])])
    else:
        weak_text = f"{len(weak)} quer{'y' if len(weak) == 1 else 'ies'}"
    photo = {"form": "photo", "seed 0": float(first.mean()), "mean": float(first.mean()), "range": "",
             "interval": interval(first.astype(float)), "TPR@1%": tpr_photo,
             "weak": f"{int((~first).sum())} not first"}
    like = {"form": f"catalogue-like, {seeds} seeds", "seed 0": float(per_seed[0]), "mean": float(per_seed.mean()),
            "range": f"{per_seed.min():.3f}-{per_seed.max():.3f}", "interval": interval(hits),
            "TPR@1%": float(np.mean(tprs)), "weak": weak_text or "none"}
    return {"photo": photo, "like": like}, {"photo": first.astype(float), "like": hits}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, help="model files, or 'default'; the first is the reference")
    ap.add_argument("--seeds", type=int, default=10, help="draws of the catalogue-like angles (seeds 0 .. N-1)")
    ap.add_argument("--verify", type=int, default=0, metavar="N",
                    help="verify each query's first N entries, as search --verify --candidates N (default: none)")
    ap.add_argument("--reuse", action="store_true", help="read the vectors of an earlier run back")
    ap.add_argument("--name", default="seeds", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for test in TESTS:
        sets = query_crops(test, args.seeds)
        features = local_features(sets) if args.verify > 0 else None
        rankings = {"embedding": 0, **({f"verified top {args.verify}": args.verify} if features else {})}
        reference = {}
        for m in args.models:
            d = vectors(Embedder(None if m == "default" else m), sets, test, args.seeds, args.reuse)
            d["density"] = catalogue_density(d)  # each entry's, once: every query form meets the same catalogue
            modes = CELL_MODES if d.get("cat:c") is not None else ("search",)
            for ranking, candidates in rankings.items():
                results = {}
                for mode in modes:
                    if mode == "cells alone" and candidates:
                        continue  # verified as search verifies: by its score, cells added or not
                    t = time.perf_counter()
                    results[mode] = study(d, sets, args.seeds, features, candidates, mode)
                    if candidates:
                        print(f"{TESTS[test]}, {m} ({mode}): verified in {time.perf_counter() - t:.0f} s", flush=True)
                plain = results.get("no cells", results["search"])[1]  # this ranking without cells
                for mode, (found, hits) in results.items():
                    label = {"search": ranking, "no cells": f"{ranking}, no cells", "cells alone": "cells alone"}[mode]
                    for key, r in found.items():
                        r.update(model=m, test=TESTS[test], ranking=label, vs="")
                        if mode != "no cells" and len(results) > 1:  # a cell model: against itself without cells
                            r["vs"] = f"{difference(hits[key], plain[key])} vs no cells"
                        elif ranking in reference:
                            r["vs"] = f"{difference(hits[key], reference[ranking][key])} vs {args.models[0]}"
                        rows.append(r)
                reference.setdefault(ranking, plain)
    rows.sort(key=lambda r: (r["test"], r["ranking"] != "embedding", r["ranking"]))  # stable: models in order
    columns = [("test", "test", "<16"), ("ranking", "ranking", "<16"), ("model", "model", "<20"),
               ("form", "queries", "<26"),
               ("seed 0", "R@1 seed 0", "10.3f"), ("mean", "mean", "6.3f"), ("range", "seeds' range", "<12"),
               ("interval", "95 % interval", "<16"), ("vs", "paired difference", "<26"),
               ("TPR@1%", "TPR@1%FPR", "9.3f"), ("weak", "first at under half the seeds (share)", "<")]
    text = ("ranking: embedding = search's score less half the local density; verified top N = that with its first "
            "N verified, as search --verify ranks\n" + format_table(rows, columns))
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

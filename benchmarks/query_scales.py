"""Does the crop's scale or the catalogue photo's resolution hold the embedding back on catalogue-like queries?

    .venv/bin/python benchmarks/query_scales.py --model runs/recipe.cm [--reuse] [--name query-scales]

Two things differ between a catalogue-like query and its catalogue photo besides grey and angle, and either
could cost the embedding its first place:
  - the crop's scale: the coin finder takes a 10 cent coin's inner rim line on some photos and its edge on
    others (about 10 % apart), and a coin that leaves the frame is cropped from less than its whole disc;
  - resolution: the query is shrunk to 128 px (its coin crop 73-125 px), the catalogue photo is sharp.
On both real same-coin tests, the euro pairs (benchmarks/common.py) and the euro singles' mined pairs
(benchmarks/singles_pairs.py, the same sets and draws), with the model's score as search gives it ((pooled
cosine + aligned cosine) / 2, every entry scored), this study scores:
  - each query cropped from its found circle with the radius times 0.85 ... 1.15 (padded where the crop leaves
    the photo), alone, and the best (max) or the mean over 3, 2 or all 7 of those crops: a search over
    scales at query time;
  - the catalogue embedded again from its crops shrunk to 96 and 128 px (area averaging), against the query
    as cropped: alone, and the best or mean of the sharp and the small vector: catalogue vectors at a
    resolution like the query's.
It reports recall@1 and @5, the open-set ROC AUC and TPR at 1 % FPR (benchmarks/aligned.py's), and the
euro queries not ranked first with their ranks (of the singles' queries, how many). The vectors (ONNX Runtime,
about 30 min on 2 cores) are kept in out/benchmarks/ (``--reuse``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import cv2
import numpy as np

from aligned import scores
from common import WORK, euro_crops, format_table, save_results, stored_descriptors
from singles_pairs import real_test
from coinmatch.align import cyclic_similarity
from coinmatch.evaluation.protocol import load_query_images
from coinmatch.models.runtime import Embedder
from coinmatch.segment import FINDER_VERSION, Circle, CoinLocation, crop_coin, locate_coin

FORMS = ("photo", "catalogue-like")
FACTORS = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15)
SMALL = (96, 128)
SEARCHES = ((0.9, 1.0, 1.1), (0.95, 1.0, 1.05), FACTORS)
TESTS = {"euro": "euro pairs (84)", "singles": "singles pairs"}


def real_sets(test: str) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], np.ndarray, np.ndarray]:
    """One real test: its catalogue's coin crops, its query photos in both forms, each query's catalogue index,
    and the queries' names (none for the singles': they are the second photos of mined pairs)."""
    if test == "euro":
        ids, cat, queries = euro_crops()
        true = np.array([np.flatnonzero(ids == q.true_id)[0] for q in queries])
        forms = {form: load_query_images(queries, form) for form in FORMS}
        return cat, forms, true, np.array([q.name.rsplit("/", 1)[-1] for q in queries])
    _, cat, forms, true = real_test()  # benchmarks/singles_pairs.py's sets and draws
    return cat, forms, true, np.array([], dtype=str)


def extract(embedder: Embedder, test: str) -> dict[str, np.ndarray]:
    """Pooled (v) and angle (a) vectors: the catalogue sharp and small, each query at every radius factor."""
    cat, forms, true, names = real_sets(test)
    out = {"true": true, "names": names}

    def embed(key: str, crops: list[np.ndarray]) -> None:
        t = time.perf_counter()
        out[f"{key}:v"], out[f"{key}:a"] = embedder.embed_with_angles(crops)
        print(f"{key}: {len(crops)} images in {time.perf_counter() - t:.0f} s", flush=True)

    embed("cat", cat)
    for side in SMALL:
        embed(f"cat@{side}", [cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in cat])
    for form, images in forms.items():
        found = [locate_coin(im) for im in images]
        out[f"{form}:crop side"] = np.array([crop_coin(im, loc, mask=False).shape[0]
                                             for im, loc in zip(images, found)])
        for f in FACTORS:
            embed(f"{form}x{f}", [crop_coin(im, rescaled(loc, f), mask=False) for im, loc in zip(images, found)])
    return out


def rescaled(loc: CoinLocation, factor: float) -> CoinLocation:
    """The found coin with its circle's radius times ``factor``, about the same centre."""
    c = loc.circle
    return replace(loc, circle=Circle(c.x, c.y, c.r * factor))


def score(d: dict[str, np.ndarray], query: str, cat: str) -> np.ndarray:
    """Queries x entries: search's score, (pooled cosine + aligned cosine) / 2, or the pooled cosine alone for a
    model without angle vectors (its angle vectors None), as search scores such a model."""
    pooled = d[f"{query}:v"] @ d[f"{cat}:v"].T
    if d[f"{query}:a"] is None:
        return pooled
    return (pooled + cyclic_similarity(d[f"{query}:a"], d[f"{cat}:a"])) / 2


def row(d: dict[str, np.ndarray], form: str, method: str, S: np.ndarray) -> dict:
    rank = (S > S[np.arange(len(S)), d["true"]][:, None]).sum(1) + 1
    if len(d["names"]):
        misses = ", ".join(f"{n.removesuffix('_b.jpg')} {r}" for n, r in zip(d["names"], rank) if r > 1)
    else:
        misses = f"{int((rank > 1).sum())} queries"
    return {"test": d["test"], "form": form, "method": method, **scores(S, d["true"]), "misses": misses}


def study(d: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for form in FORMS:
        per = {f: score(d, f"{form}x{f}", "cat") for f in FACTORS}
        rows += [row(d, form, f"query crop radius x {f}", S) for f, S in per.items()]
        for fs in SEARCHES:
            label = "all 7" if fs == FACTORS else " ".join(map(str, fs))
            rows.append(row(d, form, f"query crops {label}: best", np.max([per[f] for f in fs], axis=0)))
            rows.append(row(d, form, f"query crops {label}: mean", np.mean([per[f] for f in fs], axis=0)))
        for side in SMALL:
            small = score(d, f"{form}x1.0", f"cat@{side}")
            rows.append(row(d, form, f"catalogue at {side} px", small))
            rows.append(row(d, form, f"catalogue sharp and at {side} px: best", np.maximum(per[1.0], small)))
            rows.append(row(d, form, f"catalogue sharp and at {side} px: mean", (per[1.0] + small) / 2))
    return rows


def stored_vectors(embedder: Embedder, test: str, reuse: bool = True) -> tuple[dict[str, np.ndarray], str]:
    """This study's vectors of ``test`` ("euro" or "singles") for the embedder's model: read back when stored and
    ``reuse``, else made (about 30 minutes on 2 cores) and stored. Returns them and how they were had."""
    # the crops depend on the coin finder as well as the model: vectors of another finder's crops are not read back
    path = WORK / f"query-scales-{test}-{embedder.fingerprint[:12]}-finder{FINDER_VERSION}.npz"
    return stored_descriptors(path, reuse, lambda: extract(embedder, test))


def model_arguments(doc: str, name: str) -> argparse.ArgumentParser:
    """The options these studies of one model with angle vectors share: ``--model`` and ``--name`` (its results
    file, ``name`` by default); a study adds its own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model file made with --rotations > 1 (angle vectors)")
    ap.add_argument("--name", default=name, help="results file name in benchmarks/results/")
    return ap


def angle_embedder(model: str) -> Embedder:
    """The embedder of a model file that gives angle vectors (these studies score as search does with them)."""
    embedder = Embedder(model)
    if not embedder.angles:
        raise SystemExit(f"{model}: needs a model trained with --rotations 2 or more")
    WORK.mkdir(parents=True, exist_ok=True)
    return embedder


def report(name: str, model: str, rows: list[dict], method: tuple[str, int] = ("method", 40),
           lines: tuple[str, ...] = ()) -> None:
    """The rows of :func:`row` as a table (``method``: that column's header and width), printed and saved."""
    columns = [("test", "test", "<19"), ("form", "form", "<15"), ("method", method[0], f"<{method[1]}"),
               ("R@1", "R@1", "6.3f"), ("R@5", "R@5", "6.3f"), ("AUC", "ROC AUC", "8.3f"),
               ("TPR@1%", "TPR@1%FPR", "10.3f"), ("misses", "not first (rank)", "<")]
    text = "\n".join((f"model {model}",) + lines) + "\n" + format_table(rows, columns)
    print(text)
    save_results(name, [{"model": model, **r} for r in rows], text)


def main() -> None:
    ap = model_arguments(__doc__, "query-scales")
    ap.add_argument("--reuse", action="store_true", help="read the vectors of an earlier run back")
    args = ap.parse_args()
    embedder = angle_embedder(args.model)
    rows, lines = [], []
    for test, label in TESTS.items():
        d, how = stored_vectors(embedder, test, args.reuse)
        d["test"] = label
        sides = {form: np.percentile(d[f"{form}:crop side"], [0, 50, 100]).astype(int) for form in FORMS}
        print(f"{label}: vectors {how}", flush=True)
        lines.append(f"{label}: query coin crops, min / median / max px: "
                     + "; ".join(f"{form} {' / '.join(map(str, s))}" for form, s in sides.items()))
        rows += study(d)
    report(args.name, args.model, rows, lines=tuple(lines))


if __name__ == "__main__":
    main()

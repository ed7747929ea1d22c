"""The whitening's second step told by coins of the same type: can it learn what sets one worn coin apart from
another of its design?

    .venv/bin/python benchmarks/whitening_negatives.py [--limit 2000] [--reuse] [--name whitening-negatives]

`--loss whitening` (training/whitening.py) fits in two steps: whiten by the covariance of the differences
within (coin, augmented view) pairs, then keep the 512 strongest directions of all the whitened descriptors
(PCA). Radenović et al. take the second step's directions from non-matching pairs instead, and the research
mines "a similar coin of a different class" as the negative. The catalogue-like misses of the recipe are worn
coins among others of their design, so this study takes the second step from the covariance of differences
between coins of the same type (the training manifests' `denomination`): drawn at random, or each coin's 3
nearest of its type (hard), mixed with the PCA's covariance (each scaled to unit trace) by a weight alpha.
Random pairs of any type are the control; 256 and 1024 dimensions are looked at too. ``--types legend`` groups
the OCRE coins finer, by face and legend (the ruler's titles), since one denomination spans many designs.

Descriptors: the recipe's (grey ImageNet Lite0, 16 angles, GeM over the whole last map and three rings,
benchmarks/rings.py) of the recipe's training set (the first ``--limit`` OCRE rows and the euro singles, less
the training loop's 200 held-out coins) as it is and in 2 augmented views, as `coinmatch train --loss
whitening --whitening-views 2` makes them (seed 0). Scored as the other studies: the held-out coins' val P@1
and the euro pairs' pooled recall@1 and @5, as photographed and catalogue-like. Extraction: about 25 min on 2
cores, kept in out/benchmarks/ (``--reuse``); the fits take about 4 min.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from common import DATA, EURO, WORK, euro_crops, format_table, save_results, stored_descriptors, unit
from rings import VARIANTS, ring_embedder, variant
from coinmatch.evaluation.protocol import load_query_images
from coinmatch.prepare import prepare_array
from coinmatch.training.cache import TrainingCache, cache_size, load_cache
from coinmatch.training.loop import TrainConfig, split_validation
from coinmatch.training.validate import fixed_views
from coinmatch.training.whitening import leading_projection, pair_whitening, positive_pairs

SIZE, VIEWS, DIM, SHRINKAGE = 224, 2, 512, 0.1
PER_COIN = 3  # negatives per coin: random ones of its type, or its nearest of its type


def extract(limit: int) -> dict[str, np.ndarray]:
    embed = ring_embedder(SIZE)
    manifests = ((DATA / "ancient-coins" / "ocre.csv", limit), (EURO / "singles.csv", None))
    cache = TrainingCache.merge([load_cache(m, cache_size(SIZE), "denomination", limit=n) for m, n in manifests])
    train, val = split_validation(cache, TrainConfig.val_fraction, TrainConfig.val_max, TrainConfig.seed)
    cat_ids, cat_crops, queries = euro_crops()
    out = {"types": np.array([str(t) for t in train.types]), "names": np.array(train.names), "cat_ids": cat_ids,
           "q_ids": np.array([q.true_id for q in queries]), "cat": embed(cat_crops, "euro catalogue")}
    for form in ("photo", "catalogue-like"):
        images = load_query_images(queries, form, seed=0)
        out["q:" + form] = embed([prepare_array(im, q.name).crop for im, q in zip(images, queries)], form)
    va, vb = fixed_views(val, SIZE)
    out["val_a"], out["val_b"] = embed(list(va), "held-out view a"), embed(list(vb), "held-out view b")
    plain, views = positive_pairs(train, SIZE, TrainConfig.seed, VIEWS)
    out["x"], out["y"] = embed(plain, "training coins"), embed(views, "their augmented views")
    return out


class Fit:
    """The first step (whitening by the positive pairs' differences: training/whitening.py's own) and the
    covariances the second step may take its directions from."""

    def __init__(self, v: dict[str, np.ndarray], types: np.ndarray, seed: int = 0):
        x = v["x"].astype(np.float64)
        self.p1, self.mean, white = pair_whitening(np.tile(x, (VIEWS, 1)), v["y"], SHRINKAGE)
        self.pca = white.T @ white / len(white)
        wx = white[:len(x)]  # the coins as they are (the first of the tiled copies)
        rng = np.random.default_rng(seed)
        groups = [np.flatnonzero(types == t) for t in np.unique(types)]
        groups = [g for g in groups if len(g) > 1]
        rand = [(p, np.roll(p, 1)) for g in groups for p in (rng.permutation(g) for _ in range(PER_COIN))]
        base = unit((x - self.mean) @ self.second(self.pca, DIM).T)  # the PCA second step: the recipe
        hard = []
        for g in groups:
            s = base[g] @ base[g].T
            np.fill_diagonal(s, -np.inf)
            near = np.argsort(-s, axis=1)[:, :min(PER_COIN, len(g) - 1)]
            hard += [(g, g[near[:, j]]) for j in range(near.shape[1])]
        order = rng.permutation(len(wx))
        self.negatives = {"same type, random": self.pair_cov(wx, rand), "same type, hard": self.pair_cov(wx, hard),
                          "any type, random (control)": self.pair_cov(wx, [(np.arange(len(wx)), order)])}

    @staticmethod
    def pair_cov(wx: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        a = np.concatenate([p for p, _ in pairs])
        b = np.concatenate([q for _, q in pairs])
        diff = wx[a] - wx[b]
        return diff.T @ diff / len(diff)

    def second(self, cov: np.ndarray, dim: int) -> np.ndarray:
        """The projection: the first step, then the ``dim`` strongest directions of ``cov``."""
        return leading_projection(cov, self.p1, dim)

    def mixed(self, negatives: str, alpha: float, dim: int = DIM) -> np.ndarray:
        cov = self.negatives[negatives]
        return self.second((1 - alpha) * self.pca / np.trace(self.pca) + alpha * cov / np.trace(cov), dim)


def scores(v: dict[str, np.ndarray], d: dict[str, np.ndarray], projection: np.ndarray, mean: np.ndarray) -> dict:
    w = {k: unit((a.astype(np.float64) - mean) @ projection.T) for k, a in v.items() if not k.startswith(("x", "y"))}
    val = w["val_b"] @ w["val_a"].T
    out = {"val P@1": float(np.mean(val.argmax(1) == np.arange(len(val))))}
    true = np.array([np.flatnonzero(d["cat_ids"] == q)[0] for q in d["q_ids"]])
    for form in ("photo", "catalogue-like"):
        s = w["q:" + form] @ w["cat"].T
        rank = (s > s[np.arange(len(s)), true][:, None]).sum(1) + 1
        out[f"{form} R@1"], out[f"{form} R@5"] = float(np.mean(rank == 1)), float(np.mean(rank <= 5))
    return out


def legend_types(d: dict[str, np.ndarray]) -> np.ndarray:
    """A finer type for the OCRE coins: the face and its legend's first part (the ruler's titles, before the
    description), a rough stand-in for the design, which the manifest does not give; the euro singles keep their
    denomination, whose common side is one design in every country."""
    with open(DATA / "ancient-coins" / "ocre.csv", encoding="utf-8") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    out = []
    for name, kind in zip(d["names"], d["types"]):
        r = rows.get(str(name))
        out.append(f"{r['side']}: {r['legend'].split(':')[0].strip()}" if r else f"euro {kind}")
    return np.array(out)


def study(d: dict[str, np.ndarray], types: np.ndarray) -> list[dict]:
    v = variant(d, VARIANTS["whole + rings (--rings)"])
    fit = Fit(v, types)
    rows = [{"second step": "PCA of all whitened descriptors (the recipe)", "dim": DIM,
             **scores(v, d, fit.second(fit.pca, DIM), fit.mean)}]
    for negatives in fit.negatives:
        for alpha in (0.25, 0.5, 0.75, 1.0):
            rows.append({"second step": f"{negatives}, alpha {alpha}", "dim": DIM,
                         **scores(v, d, fit.mixed(negatives, alpha), fit.mean)})
    for dim in (256, 1024):
        rows.append({"second step": "PCA of all whitened descriptors (the recipe)", "dim": dim,
                     **scores(v, d, fit.second(fit.pca, dim), fit.mean)})
        rows.append({"second step": "same type, hard, alpha 0.5", "dim": dim,
                     **scores(v, d, fit.mixed("same type, hard", 0.5, dim), fit.mean)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=2000, help="OCRE rows read, as the recipe's --limit")
    ap.add_argument("--types", choices=("denomination", "legend"), default="denomination",
                    help="what makes two coins of one type: the manifests' denomination, or (OCRE) face and legend")
    ap.add_argument("--reuse", action="store_true", help="read the descriptors of an earlier run back")
    ap.add_argument("--name", default="whitening-negatives", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    d, how = stored_descriptors(WORK / f"whitening-negatives-{args.limit}.npz", args.reuse,
                                lambda: extract(args.limit))
    print(f"ring descriptors {how}; {len(d['x'])} training coins", flush=True)
    types = legend_types(d) if args.types == "legend" else d["types"]
    groups = np.unique(types, return_counts=True)[1]
    print(f"{args.types}: {len(groups)} types, {int((groups > 1).sum())} of them with 2 coins or more "
          f"({int(groups[groups > 1].sum())} coins)", flush=True)
    rows = study(d, types)
    columns = [("second step", "second step", "<46"), ("dim", "dim", ">5"), ("val P@1", "val P@1", "8.3f"),
               ("photo R@1", "photo R@1", "10.3f"), ("photo R@5", "R@5", "6.3f"),
               ("catalogue-like R@1", "cat-like R@1", "13.3f"), ("catalogue-like R@5", "R@5", "6.3f")]
    text = format_table(rows, columns)
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

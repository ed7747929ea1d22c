"""Local density (hubness reduction) on both real same-coin tests, every entry scored: how much, and how
sensitive to its two settings.

    .venv/bin/python benchmarks/density.py --model runs/recipe.cm [--name density]

Search takes half of each shortlisted entry's local density off its score (search.py): the mean score of its
k = 10 nearest other catalogue entries, CSLS's catalogue side with CSLS's own k and weight (Conneau et al.
2018), chosen before looking. This study scores every entry that way, on the euro pairs and on the singles'
mined pairs (benchmarks/query_scales.py's sets and its stored vectors: the query crops as search makes them,
the catalogue as it is), for k in 1, 3, 5, 10, 20 and weights 0.25, 0.5 and 1, with the density measured by
search's score of a pair ((pooled + aligned cosine) / 2) over every other entry (search takes the best of each
entry's 20 nearest by cosine) and by the pooled cosine alone, and with the query's own density taken off too
(full CSLS: it moves no ranking, only the open-set figures).
benchmarks/retrieval.py measures the same through search itself (its top 20 scored again), on the euro pairs.

It needs query_scales.py's vectors for the model (out/benchmarks/query-scales-*.npz); without them it makes
them first (about 30 minutes on 2 cores).
"""

from __future__ import annotations


import numpy as np

from query_scales import FORMS, TESTS, angle_embedder, model_arguments, report, row, score, stored_vectors
from coinmatch.search import DENSITY_K

KS = (1, 3, 5, 10, 20)
WEIGHTS = (0.25, 0.5, 1.0)


def top_mean(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the mean of its k highest scores."""
    return np.sort(scores, axis=1)[:, -k:].mean(axis=1)


def catalogue_density(d: dict[str, np.ndarray], k: int = DENSITY_K) -> np.ndarray:
    """Each catalogue entry's local density as search measures it: the mean of its ``k`` best scores (search's
    score of a pair) against the other entries (one photo per entry here)."""
    between = score(d, "cat", "cat")
    np.fill_diagonal(between, -np.inf)
    return top_mean(between, k)


def study(d: dict[str, np.ndarray]) -> list[dict]:
    between = {"search's score": score(d, "cat", "cat"), "pooled cosine": d["cat:v"] @ d["cat:v"].T}
    for s in between.values():
        np.fill_diagonal(s, -np.inf)  # an entry is not its own neighbour (one photo per entry here)
    rows = []
    for form in FORMS:
        S = score(d, f"{form}x1.0", "cat")
        rows.append(row(d, form, "search's score, no density", S))
        for by, between_scores in between.items():
            for k in KS:
                density = top_mean(between_scores, k)
                for w in WEIGHTS:
                    rows.append(row(d, form, f"density by {by}, k {k}, weight {w}", S - w * density[None, :]))
        density = top_mean(between["search's score"], 10)
        rows.append(row(d, form, "full CSLS / 2 (the query's density too), k 10",
                        S - 0.5 * density[None, :] - 0.5 * top_mean(S, 10)[:, None]))
    return rows


def main() -> None:
    args = model_arguments(__doc__, "density").parse_args()
    embedder = angle_embedder(args.model)
    rows = []
    for test, label in TESTS.items():
        d, how = stored_vectors(embedder, test)
        d["test"] = label
        print(f"{label}: vectors {how}", flush=True)
        rows += study(d)
    report(args.name, args.model, rows, ("method", 48))


if __name__ == "__main__":
    main()

"""Two trained models' scores summed, against each alone, on both real same-coin tests.

    .venv/bin/python benchmarks/aligned.py --model A.cm     # per-angle descriptors of each model, kept
    .venv/bin/python benchmarks/aligned.py --model B.cm     # in out/benchmarks/ (about 13 min each)
    .venv/bin/python benchmarks/fusion.py --models A.cm B.cm [--name fusion]

Each model scores a query against every catalogue entry as search does by default over its whole catalogue:
the mean of its pooled cosine and its aligned cosine (benchmarks/aligned.py's "pooled + cyclic"). The fused
score is the plain mean of the two models' scores: equal weights, chosen before looking, so that the test sets
pick nothing. Reported on the euro pairs and the euro singles' mined pairs, as photographed and catalogue-like:
recall@1 and @5, and the open-set ROC AUC and TPR at 1 % FPR.
"""

from __future__ import annotations

import argparse

import numpy as np

from aligned import FORMS, TESTS, pooled_and_cyclic, scores
from common import WORK, format_table, save_results, unit
from coinmatch.models.modelfile import load_model


def search_scores(model, d: dict, test: str, form: str) -> np.ndarray:
    """Queries x entries: (pooled cosine + aligned cosine) / 2, the model as search scores its shortlist."""
    pooled, cyclic = pooled_and_cyclic(model.network.eval(), unit(d[f"{test}:cat"]), unit(d[f"{test}:{form}"]))
    return (pooled + cyclic) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs=2, required=True, help="two model files, each run through aligned.py first")
    ap.add_argument("--name", default="fusion", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    models, stored = [], []
    for path in args.models:
        model = load_model(path)
        npz = WORK / f"aligned-{model.fingerprint[:12]}.npz"
        if not npz.exists():
            raise SystemExit(f"{npz} not found: run benchmarks/aligned.py --model {path} first")
        models.append(model)
        stored.append(dict(np.load(npz)))
    rows = []
    for test in TESTS:
        true = stored[0][f"{test}:true"]
        if not np.array_equal(true, stored[1][f"{test}:true"]):
            raise SystemExit(f"{test}: the two descriptor files hold other test sets")
        for form in FORMS:
            each = [search_scores(m, d, test, form) for m, d in zip(models, stored)]
            methods = {args.models[0]: each[0], args.models[1]: each[1], "mean of both": (each[0] + each[1]) / 2}
            rows += [{"test": TESTS[test], "form": form, "method": name, **scores(S, true)}
                     for name, S in methods.items()]
    columns = [("test", "test", "<19"), ("form", "form", "<15"), ("method", "method", "<40"), ("R@1", "R@1", "6.3f"),
               ("R@5", "R@5", "6.3f"), ("AUC", "ROC AUC", "8.3f"), ("TPR@1%", "TPR@1%FPR", "10.3f")]
    text = format_table(rows, columns)
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

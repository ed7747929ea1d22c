"""Matching angle by angle with a trained rotation-pooled model, against its pooled vector.

    .venv/bin/python benchmarks/aligned.py --model runs/whitening-2000-rings-v2.cm [--reuse] [--name aligned]
    .venv/bin/python benchmarks/aligned.py --model untrained --name aligned-untrained

A model trained with ``--rotations 16`` sees each coin at 16 angles and averages the 16 pooled descriptors
before its whitening: one vector per image, blind to the coin's orientation (what search uses). This study
keeps the 16 descriptors apart instead, passes each through the model's own whitening and head, and scores
a query against a catalogue entry by the best cyclic shift of its 16 angles against the entry's 16: the
coin is compared turned to its best orientation, so the layout of its features counts. No new fit: the
model's whitening as trained. On both real same-coin tests, the euro pairs (benchmarks/common.py) and the
euro singles' mined pairs (benchmarks/singles_pairs.py, the same sets and draws), as photographed and
catalogue-like, it reports recall@1 and @5 and the open-set ROC AUC and TPR at 1 % FPR (the true coin's
score against the best other coin's) for:
  - pooled: the model as search uses it;
  - cyclic: every entry by its best shift;
  - pooled + cyclic: the sum of the two scores;
  - the pooled top 20 and top 100 re-ranked by cyclic, and by pooled + cyclic (what a search would do: 16
    vectors stored per entry, read for the shortlist only).
The per-angle descriptors (torch on the CPU, about 13 min) are kept in out/benchmarks/; ``--reuse`` reads them
back and reruns the scoring in seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import (WORK, euro_crops, format_table, save_results, stored_descriptors, unit,
                    untrained_invariant_model)
from singles_pairs import real_test
from coinmatch.align import cyclic_similarity
from coinmatch.evaluation import metrics
from coinmatch.evaluation.protocol import load_query_images
from coinmatch.models.modelfile import load_model
from coinmatch.models.runtime import to_batch
from coinmatch.prepare import prepare_array

FORMS = ("photo", "catalogue-like")
TESTS = {"euro": "euro pairs (84)", "singles": "singles pairs (71)"}


def angle_descriptors(net, crops: list[np.ndarray], size: int, what: str) -> np.ndarray:
    """N x angles x D: each crop's pooled descriptor at each of the network's angles, before the mean."""
    t, out = time.perf_counter(), []
    with torch.inference_mode():
        for i in range(0, len(crops), 2):
            x = torch.from_numpy(to_batch(crops[i:i + 2], size))
            d = net.pooled(net.feature_maps(net.views(x))[-1])  # angle-major: (angles * n) x D
            out.append(d.view(net.rotations, x.shape[0], -1).permute(1, 0, 2).numpy().astype(np.float32))
    print(f"{what}: {len(crops)} images x {net.rotations} angles in {time.perf_counter() - t:.0f} s", flush=True)
    return np.concatenate(out)


def extract(model) -> dict[str, np.ndarray]:
    """Per-angle descriptors of both real same-coin tests: the euro pairs and the euro singles' mined pairs."""
    net, size = model.network.eval(), model.config.image_size
    cat_ids, cat_crops, queries = euro_crops()
    true = np.array([np.flatnonzero(cat_ids == q.true_id)[0] for q in queries])
    out = {"euro:cat": angle_descriptors(net, cat_crops, size, "euro pairs: catalogue"), "euro:true": true}
    for form in FORMS:
        images = load_query_images(queries, form)
        out[f"euro:{form}"] = angle_descriptors(
            net, [prepare_array(im, q.name).crop for im, q in zip(images, queries)], size, f"euro pairs: {form}")
    _, cat_crops, forms, out["singles:true"] = real_test()  # benchmarks/singles_pairs.py's sets and draws
    out["singles:cat"] = angle_descriptors(net, cat_crops, size, "singles pairs: catalogue")
    for form, ims in forms.items():
        out[f"singles:{form}"] = angle_descriptors(net, [prepare_array(im).crop for im in ims], size,
                                                   f"singles pairs: {form}")
    return out


def project(net, v: np.ndarray) -> np.ndarray:
    """The model's whitening and head on each descriptor (last axis), unit length (CoinEmbedder.project)."""
    with torch.inference_mode():
        return net.project(torch.from_numpy(np.ascontiguousarray(v))).numpy()


def pooled_and_cyclic(net, cat: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Queries x entries, from per-angle descriptors (N x angles x D, unit length): the pooled cosine (the
    angles' mean through the model's whitening and head) and the cyclic one (the best shift of the angles)."""
    pooled = project(net, unit(q.mean(axis=1))) @ project(net, unit(cat.mean(axis=1))).T
    return pooled, cyclic_similarity(project(net, q), project(net, cat))


def reranked(first: np.ndarray, second: np.ndarray, k: int) -> np.ndarray:
    """``second``'s scores for each query's top k by ``first``; every other entry below them."""
    top = np.argsort(-first, axis=1)[:, :k]
    out = np.full_like(first, -np.inf)
    np.put_along_axis(out, top, np.take_along_axis(second, top, axis=1), axis=1)
    return out


def true_and_best_other(S: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query (a row of S): the true entry's score, and the best score of any other entry."""
    rows = np.arange(len(S))
    others = S.copy()
    others[rows, true] = -np.inf
    return S[rows, true], others.max(1)


def scores(S: np.ndarray, true: np.ndarray) -> dict:
    pos, neg = true_and_best_other(S, true)
    rank = (S > pos[:, None]).sum(1) + 1
    finite = np.isfinite(pos)  # a re-ranked query whose coin fell outside the shortlist scores as the lowest
    pos = np.where(finite, pos, np.min(neg) - 1)
    roc = metrics.open_set(pos, neg)
    return {"R@1": float(np.mean(rank == 1)), "R@5": float(np.mean(rank <= 5)), "AUC": roc["roc_auc"],
            "TPR@1%": roc["tpr@fpr=0.01"]}


def study(model, d: dict) -> list[dict]:
    net = model.network.eval()
    rows = []
    for test in TESTS:
        cat = unit(d[f"{test}:cat"])
        true = d[f"{test}:true"]
        for form in FORMS:
            pooled, aligned = pooled_and_cyclic(net, cat, unit(d[f"{test}:{form}"]))
            methods = {"pooled (search now)": pooled, "cyclic": aligned, "pooled + cyclic": pooled + aligned,
                       "cyclic re-rank of pooled top 20": reranked(pooled, aligned, 20),
                       "cyclic re-rank of pooled top 100": reranked(pooled, aligned, 100),
                       "pooled + cyclic re-rank of top 20": reranked(pooled, pooled + aligned, 20),
                       "pooled + cyclic re-rank of top 100": reranked(pooled, pooled + aligned, 100)}
            rows += [{"test": TESTS[test], "form": form, "method": name, **scores(S, true)}
                     for name, S in methods.items()]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True,
                    help="a model file made with --rotations > 1, or 'untrained' (ImageNet Lite0, grey, 16 angles)")
    ap.add_argument("--reuse", action="store_true", help="read the descriptors of an earlier run back")
    ap.add_argument("--name", default="aligned", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    label = "untrained (ImageNet Lite0, grey, 16 angles)" if args.model == "untrained" else args.model
    model = load_model(untrained_invariant_model() if args.model == "untrained" else args.model)
    if model.network.rotations < 2 or model.config.stages != 1:
        raise SystemExit(f"{label}: needs a model of one stage trained with --rotations 2 or more")
    WORK.mkdir(parents=True, exist_ok=True)
    d, how = stored_descriptors(WORK / f"aligned-{model.fingerprint[:12]}.npz", args.reuse, lambda: extract(model))
    print(f"{label}: per-angle descriptors {how}", flush=True)
    rows = study(model, d)
    columns = [("test", "test", "<19"), ("form", "form", "<15"), ("method", "method", "<35"), ("R@1", "R@1", "6.3f"),
               ("R@5", "R@5", "6.3f"), ("AUC", "ROC AUC", "8.3f"), ("TPR@1%", "TPR@1%FPR", "10.3f")]
    text = f"model {label}\n" + format_table(rows, columns)
    print(text)
    save_results(args.name, [{"model": label, **r} for r in rows], text)


if __name__ == "__main__":
    main()

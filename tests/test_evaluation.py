import json
import subprocess

import numpy as np
import pytest

from coinmatch.catalog.build import build_catalogue
from coinmatch.evaluation import metrics
from coinmatch.evaluation.calibrate import store_calibration
from coinmatch.evaluation.protocol import catalogue_like, load_query_images, read_queries
from coinmatch.evaluation.run import evaluate
from coinmatch.search import Searcher

from test_cli import BIN, ROOT


def test_metrics_on_known_ranks_and_scores():
    ranks = np.array([1, 1, 2, 5, 0])
    assert metrics.recall_at(ranks, 1) == 0.4 and metrics.recall_at(ranks, 5) == 0.8
    assert metrics.mean_average_precision(ranks) == pytest.approx((1 + 1 + 0.5 + 0.2 + 0) / 5)
    assert metrics.median_rank(ranks, 100) == 2
    pos, neg = np.array([0.9, 0.8, 0.7]), np.linspace(0, 0.75, 100)
    t = metrics.threshold_for_fpr(neg, 0.01)
    assert np.mean(neg >= t) <= 0.01 and t <= neg.max()  # the lowest threshold that keeps FPR at 1 %
    roc = metrics.open_set(pos, neg)
    assert roc["roc_auc"] == pytest.approx(1 - 7 / 300)  # 7 negatives lie above 0.7
    assert roc["tpr@fpr=0.01"] == pytest.approx(2 / 3)  # one negative may pass: 0.742..., so 0.7 does not


def test_bootstrap_interval_of_a_mean_over_queries():
    assert metrics.bootstrap_interval(np.ones(30)) == (1.0, 1.0)
    hits = np.r_[np.ones(100), np.zeros(100)]
    lo, hi = metrics.bootstrap_interval(hits)
    assert lo < 0.5 < hi and 0.05 < 0.5 - lo < 0.09 and 0.05 < hi - 0.5 < 0.09  # about 1.96 x sqrt(.25 / 200)
    assert metrics.bootstrap_interval(hits, seed=3) == metrics.bootstrap_interval(hits, seed=3)
    # a row per query (its outcome over several draws) is averaged first: a query right half the time counts 0.5
    rows = np.tile([[1.0, 0.0]], (50, 1))
    assert metrics.bootstrap_interval(rows) == (0.5, 0.5)
    narrow = metrics.bootstrap_interval(hits, level=0.5)
    assert lo < narrow[0] < narrow[1] < hi


def test_catalogue_like_form_is_grey_small_and_seeded(pair_paths):
    from coinmatch.images import load_rgb

    rgb = load_rgb(pair_paths[0][1])
    a = catalogue_like(rgb, np.random.default_rng(0))
    b = catalogue_like(rgb, np.random.default_rng(0))
    assert max(a.shape[:2]) == 128 and np.array_equal(a, b)
    assert np.array_equal(a[..., 0], a[..., 1])


@pytest.fixture(scope="module")
def demo_eval(tmp_path_factory, demo_dir):
    root = tmp_path_factory.mktemp("ev") / "cat"
    build_catalogue(root, demo_dir / "catalogue.csv", progress=False)
    searcher = Searcher(root)
    queries = read_queries(demo_dir / "queries.csv", "coin_id")
    images = load_query_images(queries)
    return root, searcher, queries, images


def test_evaluation_on_real_pairs(demo_eval):
    root, searcher, queries, images = demo_eval
    ev = evaluate(searcher, queries, images)
    s = ev.summary()
    assert s["queries"] == 24 and s["catalogue"] == 60
    assert s["recall@1"] >= 0.9 and s["recall@5"] == 1.0 and s["median_rank"] == 1
    assert s["roc_auc"] > 0.9
    # every query's true coin scores above the best other coin in most cases
    assert np.mean([o.positive > o.negative for o in ev.outcomes]) >= 0.9
    ver = evaluate(searcher, queries, images, verify=True).summary()
    assert ver["recall@1"] == 1.0 and ver["roc_auc"] >= 0.95


def test_open_set_queries_without_a_match_count_as_negatives(demo_eval, tmp_path, demo_dir):
    root, searcher, queries, images = demo_eval
    from coinmatch.evaluation.protocol import Query

    unknown = [Query(q.name, q.path, "not-in-catalogue") for q in queries[:5]]
    ev = evaluate(searcher, queries + unknown, images + images[:5])
    s = ev.summary()
    assert s["queries"] == 29 and s["queries_with_match"] == 24
    assert all(o.rank == 0 and np.isnan(o.positive) for o in ev.outcomes[24:])


def test_calibration_adds_a_decision_to_search(demo_eval):
    root, searcher, queries, images = demo_eval
    ev = evaluate(searcher, queries, images)
    cal = store_calibration(searcher, ev, 0.05)
    assert cal["embedding_threshold"] == cal["threshold"] and cal["mode"] == "embedding"
    fresh = Searcher(root)
    [hit] = fresh.search([queries[0].path])
    assert hit.decision == "match"
    assert [r.decision for r in fresh.search([q.path for q in queries[:3]])] == ["match"] * 3
    ancient = ROOT.parent / "shared" / "data" / "ancient-coins" / "ocre" / "heads00001.jpg"
    if ancient.exists():  # a coin the catalogue does not hold is refused
        assert fresh.search([ancient])[0].decision == "no_match"
    fresh.close()


def test_eval_cli_json_keys_and_report(tmp_path, demo_eval):
    root = demo_eval[0]
    proc = subprocess.run([BIN, "eval", str(root), "demo/data/queries.csv", "--id-column", "coin_id", "--json",
                           "--out", str(tmp_path / "report")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    for key in ("queries", "catalogue", "recall@1", "recall@5", "recall@10", "map", "median_rank", "roc_auc",
                "tpr@fpr=0.01", "eer", "threshold", "ms_per_query"):
        assert key in s
    for f in ("index.html", "histograms.png", "roc.png", "neighbours.png", "queries.csv", "summary.json"):
        assert (tmp_path / "report" / f).stat().st_size > 100
    assert "recall@1" in (tmp_path / "report" / "index.html").read_text()


def test_calibrate_cli_then_search_json_has_decision(tmp_path, demo_dir):
    root = tmp_path / "cat"
    build_catalogue(root, demo_dir / "catalogue.csv", progress=False)
    proc = subprocess.run([BIN, "calibrate", str(root), "demo/data/queries.csv", "--id-column", "coin_id",
                           "--verify", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    cal = json.loads(proc.stdout)
    assert cal["mode"] == "verified" and "embedding_threshold" in cal and "verified_threshold" in cal
    q = "demo/data/queries/" + sorted((demo_dir / "queries").iterdir())[0].name
    for extra in ([], ["--verify"]):
        out = subprocess.run([BIN, "search", str(root), q, "--json", *extra], capture_output=True, text=True,
                             cwd=ROOT)
        assert json.loads(out.stdout)["decision"] == "match"
    ancient = ROOT.parent / "shared" / "data" / "ancient-coins" / "ocre" / "heads00001.jpg"
    if ancient.exists():  # a coin that is not in the catalogue at all
        out = subprocess.run([BIN, "search", str(root), str(ancient), "--json", "--verify"], capture_output=True,
                             text=True, cwd=ROOT)
        assert json.loads(out.stdout)["decision"] == "no_match"

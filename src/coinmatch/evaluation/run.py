"""Run a query set against a catalogue: ranks (closed set), true-vs-best-other scores (open set)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from coinmatch import verify as verification
from coinmatch.evaluation import metrics
from coinmatch.evaluation.protocol import Query
from coinmatch.prepare import prepare_array
from coinmatch.quality import quality_warnings
from coinmatch.search import Match, Searcher

SEARCH_DEPTH = 100  # entries ranked per query; a true coin below this counts as not found


@dataclass
class QueryOutcome:
    query: Query
    rank: int  # 1-based rank of the true coin; 0 when absent from the catalogue or below SEARCH_DEPTH
    top: list[Match]
    positive: float  # score of the true coin (nan when it is not in the catalogue)
    negative: float  # best score of any other coin: the leave-one-out score
    warnings: list[str] = field(default_factory=list)
    crop: np.ndarray | None = None


@dataclass
class Evaluation:
    outcomes: list[QueryOutcome]
    catalogue_entries: int
    seconds: float
    verified: bool

    @property
    def with_match(self) -> list[QueryOutcome]:
        return [o for o in self.outcomes if np.isfinite(o.positive)]

    def summary(self, target_fpr: float = 0.01) -> dict:
        ranks = np.array([o.rank for o in self.with_match])
        pos = np.array([o.positive for o in self.with_match])
        neg = np.array([o.negative for o in self.outcomes])
        roc = metrics.open_set(pos, neg)
        return {
            "queries": len(self.outcomes),
            "queries_with_match": len(ranks),
            "catalogue": self.catalogue_entries,
            "verified": self.verified,
            "recall@1": metrics.recall_at(ranks, 1),
            "recall@5": metrics.recall_at(ranks, 5),
            "recall@10": metrics.recall_at(ranks, 10),
            "map": metrics.mean_average_precision(ranks),
            "median_rank": metrics.median_rank(ranks, self.catalogue_entries + 1),
            "roc_auc": roc["roc_auc"],
            "tpr@fpr=0.01": roc["tpr@fpr=0.01"],
            "eer": roc["eer"],
            "threshold": metrics.threshold_for_fpr(neg, target_fpr) if len(neg) else None,
            "target_fpr": target_fpr,
            "ms_per_query": 1000 * self.seconds / max(1, len(self.outcomes)),
        }


def _true_score(searcher: Searcher, vector: np.ndarray, true_id: str) -> tuple[float, int | None]:
    rows = searcher.catalogue.entry_rows(true_id)
    if not rows:
        return float("nan"), None
    vecs = searcher.catalogue.vectors([r for r, _ in rows])
    scores = vecs @ vector
    i = int(np.argmax(scores))
    return float(scores[i]), rows[i][0]


def evaluate(searcher: Searcher, queries: list[Query], images: list[np.ndarray], verify: bool = False,
             candidates: int = 20, keep_crops: bool = False, progress: bool = False) -> Evaluation:
    """Score every query as search would. The top ``candidates`` are scored again where the searcher aligns
    and, with ``verify``, verified; the ranking and both open-set scores then use the last stage's score (the
    true coin's too, computed the same way when it is not among them), and the best other coin is taken
    from among them, the entries that search would show first."""
    from tqdm import tqdm

    n_entries = searcher.catalogue.n_entries()
    t0 = time.perf_counter()
    outcomes = []
    for q, rgb in tqdm(list(zip(queries, images)), desc="evaluating", disable=not progress):
        prepared = prepare_array(rgb, q.name)
        vectors, angles, cells = searcher.embed([prepared.crop])
        vec = vectors[0]
        ranked = searcher.candidates(vec[None], SEARCH_DEPTH)[0]
        matches = searcher.matches_for(ranked)
        true_score, true_row = _true_score(searcher, vec, q.true_id)
        if searcher.rescores:
            query_angles = None if angles is None else angles[0]
            query_cells = None if cells is None else cells[0]
            head = searcher.rescore(matches[:candidates], query_angles, query_cells)
            matches = head + matches[candidates:]
            in_head = [m for m in head if m.id == q.true_id]
            if in_head:
                true_score = in_head[0].score
            elif true_row is not None:  # scored as search would score it, were it shortlisted
                true_score = searcher.score_one(true_score, query_angles, true_row, query_cells)
        if verify:
            query_f = verification.extract(prepared.crop)
            head = searcher.verify(prepared, matches[:candidates], query_f)
            matches = head + matches[candidates:]
            in_head = [m for m in head if m.id == q.true_id]
            if in_head:
                true_score = in_head[0].verified_score
            elif true_row is not None:  # verify the true coin too, so its open-set score is comparable
                v = verification.match(query_f, searcher.stored_features(q.true_id, true_row))
                true_score = verification.combined_score(true_score, v.inliers)
            key = [m.verified_score if m.verified_score is not None else m.score for m in matches]
        else:
            key = [m.score for m in matches]
        ids = [m.id for m in matches]
        rank = ids.index(q.true_id) + 1 if q.true_id in ids else 0
        shown = candidates if verify or searcher.rescores else len(matches)  # scored by the last stage
        others = [k for m, k in zip(matches[:shown], key) if m.id != q.true_id]
        negative = max(others) if others else float("-inf")
        warnings = prepared.notes + quality_warnings(prepared.crop, 2 * prepared.location.circle.r)
        outcomes.append(QueryOutcome(q, rank, matches[:10], true_score, negative, warnings,
                                     prepared.crop if keep_crops else None))
    return Evaluation(outcomes, n_entries, time.perf_counter() - t0, verify)

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


def truth(searcher: Searcher, key: str, id_column: str = "id") -> set[str]:
    """The catalogue entries that are a query's coin: the entry whose id is ``key``, and, when the queries name
    their coin by another column, every entry whose own column of that name holds ``key`` (a catalogue built
    from a manifest with a ``coin_id`` column and no ``id``, or holding one coin more than once)."""
    if not key:
        return set()
    found = {key} if searcher.catalogue.has_entry(key) else set()
    if id_column != "id":
        found.update(searcher.catalogue.entries_where(id_column, key))
    return found


def _true_score(searcher: Searcher, vector: np.ndarray, true_ids: set[str]) -> tuple[float, int | None, str | None]:
    """The best cosine of the query's vector with any image of its true entries: (score, row, entry id)."""
    best = (float("nan"), None, None)
    for eid in sorted(true_ids):
        rows = searcher.catalogue.entry_rows(eid)
        scores = searcher.catalogue.vectors([r for r, _ in rows]) @ vector
        i = int(np.argmax(scores))
        if best[1] is None or scores[i] > best[0]:
            best = (float(scores[i]), rows[i][0], eid)
    return best


def evaluate(searcher: Searcher, queries: list[Query], images: list[np.ndarray], verify: bool = False,
             candidates: int = 20, keep_crops: bool = False, progress: bool = False,
             id_column: str = "id") -> Evaluation:
    """Score every query as search would. The top ``candidates`` are scored again where the searcher aligns
    and, with ``verify``, verified; the ranking and both open-set scores then use the last stage's score (the
    true coin's too, computed the same way when it is not among them), and the best other coin is taken
    from among them, the entries that search would show first. A query's true coin is found by
    :func:`truth`; where the catalogue holds it more than once, the first of them ranked counts."""
    from tqdm import tqdm

    n_entries = searcher.catalogue.n_entries()
    t0 = time.perf_counter()
    outcomes = []
    for q, rgb in tqdm(list(zip(queries, images)), desc="evaluating", disable=not progress):
        prepared = prepare_array(rgb, q.name)
        vectors, angles = searcher.embed([prepared.crop])
        vec = vectors[0]
        ranked = searcher.candidates(vec[None], SEARCH_DEPTH)[0]
        matches = searcher.matches_for(ranked)
        true_ids = truth(searcher, q.true_id, id_column)
        true_score, true_row, true_id = _true_score(searcher, vec, true_ids)
        if searcher.rescores:
            query_angles = None if angles is None else angles[0]
            head = searcher.rescore(matches[:candidates], query_angles)
            matches = head + matches[candidates:]
            in_head = [m for m in head if m.id in true_ids]
            if in_head:
                true_score = in_head[0].score
            elif true_row is not None:  # scored as search would score it, were it shortlisted
                true_score = searcher.score_one(true_score, query_angles, true_row)
        if verify:
            query_f = verification.extract(prepared.crop)
            head = searcher.verify(prepared, matches[:candidates], query_f)
            matches = head + matches[candidates:]
            in_head = [m for m in head if m.id in true_ids]
            if in_head:
                true_score = in_head[0].verified_score
            elif true_row is not None:  # verify the true coin too, so its open-set score is comparable
                v = verification.match(query_f, searcher.stored_features(true_id, true_row))
                true_score = verification.combined_score(true_score, v.inliers)
            key = [m.verified_score if m.verified_score is not None else m.score for m in matches]
        else:
            key = [m.score for m in matches]
        rank = next((i + 1 for i, m in enumerate(matches) if m.id in true_ids), 0)
        shown = candidates if verify or searcher.rescores else len(matches)  # scored by the last stage
        others = [k for m, k in zip(matches[:shown], key) if m.id not in true_ids]
        negative = max(others) if others else float("-inf")
        warnings = prepared.notes + quality_warnings(prepared.crop, 2 * prepared.location.circle.r)
        outcomes.append(QueryOutcome(q, rank, matches[:10], true_score, negative, warnings,
                                     prepared.crop if keep_crops else None))
    return Evaluation(outcomes, n_entries, time.perf_counter() - t0, verify)


def evaluate_queries(searcher: Searcher, queries, id_column: str = "id", verify: bool = False, candidates: int = 20,
                     form: str = "photo", target_fpr: float = 0.01, report=None, progress: bool = False,
                     evaluations: dict | None = None) -> dict:
    """Read a query manifest, score it (and, with ``verify``, score it verified too) and summarise: the summary
    of the last stage, with the unverified one under ``without_verification``, and ``warnings`` where the
    result cannot mean what it seems (no query's coin is in the catalogue). ``report``: a folder for plots, a
    CSV and an HTML page. ``evaluations``: filled with the runs by name ("embedding", "verified")."""
    from coinmatch.evaluation.protocol import load_query_images, read_queries

    qs = read_queries(queries, id_column)
    images = load_query_images(qs, form)
    runs = {"embedding": evaluate(searcher, qs, images, False, candidates, report is not None, progress, id_column)}
    if verify:
        runs["verified"] = evaluate(searcher, qs, images, True, candidates, report is not None, progress, id_column)
    if evaluations is not None:
        evaluations.update(runs)
    final = runs["verified" if verify else "embedding"]
    summary = final.summary(target_fpr)
    summary.update(form=form, scoring=searcher.scoring, id_column=id_column)
    if verify:
        summary["without_verification"] = {k: v for k, v in runs["embedding"].summary(target_fpr).items()
                                           if k in ("recall@1", "recall@5", "map", "roc_auc", "tpr@fpr=0.01",
                                                    "eer", "ms_per_query")}
    warnings = []
    if not summary["queries_with_match"]:
        warnings.append(f"{queries}: no query's coin ({id_column!r}) is in {searcher.catalogue.root}, neither as an "
                        f"entry id nor in a catalogue column {id_column!r}: recall is not measured; check "
                        f"--id-column")
    summary["warnings"] = warnings
    if report is not None:
        from coinmatch.evaluation.report import write_report

        page = write_report(final, {k: v for k, v in summary.items() if not isinstance(v, (dict, list))},
                            searcher.catalogue.root, report, title=f"coinmatch evaluation: {queries}")
        summary["report"] = str(page)
    return summary

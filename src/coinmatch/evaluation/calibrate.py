"""Calibration: choose the decision threshold for a target false-positive rate and store it."""

from __future__ import annotations

import json
import time

from coinmatch import CoinmatchError
from coinmatch.evaluation.run import Evaluation, evaluate_queries
from coinmatch.search import Searcher


def store_calibration(searcher: Searcher, ev: Evaluation, target_fpr: float, embedding_ev: Evaluation | None = None) -> dict:
    """Store the threshold(s) in the catalogue, replacing any earlier calibration whole; from then on searches
    carry a decision.

    ``ev`` may be verified; ``embedding_ev`` (the same queries, unverified) sets the threshold for plain
    searches. Both come from one run of leave-one-out scores on real queries. A calibration without
    verification has no verified threshold: a verified search then gives no decision, rather than one from an
    earlier calibration of another score.
    """
    summary = ev.summary(target_fpr)
    calibration = {}
    plain = embedding_ev if embedding_ev is not None else (None if ev.verified else ev)
    if plain is not None:
        calibration["embedding_threshold"] = plain.summary(target_fpr)["threshold"]
    if ev.verified:
        calibration["verified_threshold"] = summary["threshold"]
    calibration.update({
        "mode": "verified" if ev.verified else "embedding",
        "scoring": searcher.scoring,  # the embedding's score the thresholds were set on
        "threshold": summary["threshold"],
        "target_fpr": target_fpr,
        "queries": summary["queries"],
        "roc_auc": summary["roc_auc"],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    searcher.catalogue.set_meta("calibration", json.dumps(calibration))
    searcher.calibration = calibration
    return calibration


def calibrate(searcher: Searcher, queries, id_column: str = "id", target_fpr: float = 0.01, verify: bool = False,
              candidates: int = 20, progress: bool = False) -> dict:
    """Score a query manifest (see :func:`coinmatch.evaluation.run.evaluate_queries`) and store the thresholds
    that give ``target_fpr``. Refused when no query's coin is in the catalogue (nothing to separate)."""
    if not 0.0 < target_fpr < 1.0:
        raise CoinmatchError(f"target false-positive rate {target_fpr} must lie between 0 and 1")
    runs: dict = {}
    summary = evaluate_queries(searcher, queries, id_column, verify, candidates, "photo", target_fpr,
                               progress=progress, evaluations=runs)
    if summary["warnings"]:
        raise CoinmatchError(summary["warnings"][0].replace("recall is not measured", "nothing to calibrate on"))
    return store_calibration(searcher, runs["verified" if verify else "embedding"], target_fpr,
                             embedding_ev=runs["embedding"])

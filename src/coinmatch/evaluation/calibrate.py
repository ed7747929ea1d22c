"""Calibration: choose the decision threshold for a target false-positive rate and store it."""

from __future__ import annotations

import json
import time

from coinmatch.evaluation.run import Evaluation
from coinmatch.search import Searcher


def store_calibration(searcher: Searcher, ev: Evaluation, target_fpr: float, embedding_ev: Evaluation | None = None) -> dict:
    """Store the threshold(s) in the catalogue; from then on searches carry a decision.

    ``ev`` may be verified; ``embedding_ev`` (the same queries, unverified) sets the threshold
    for plain searches. Both come from one run of leave-one-out scores on real queries.
    """
    summary = ev.summary(target_fpr)
    calibration = dict(searcher.calibration)
    plain = embedding_ev if embedding_ev is not None else (None if ev.verified else ev)
    if plain is not None:
        s = plain.summary(target_fpr)
        calibration["embedding_threshold"] = s["threshold"]
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

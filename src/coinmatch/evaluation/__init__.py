"""Evaluation: closed-set ranks, open-set scores, calibration, plots and reports on real photographs."""

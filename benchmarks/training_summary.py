"""The runs of a training folder side by side: wall time, epochs, and the held-out figures before and at the kept
epoch. Reads what ``benchmarks/gpu_training.sh`` leaves (times.txt, device.txt, NAME-history.csv).

    .venv/bin/python benchmarks/training_summary.py runs/gpu --name gpu-training
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

from common import format_table, save_results

SCORE = "val_map_at_r"  # what the training loop keeps an epoch by (no --val-pairs in these runs)


def summarise(folder: Path) -> tuple[list[dict], str]:
    times = {}
    for line in (folder / "times.txt").read_text().splitlines():
        m = re.match(r"(\S+): exit (\d+), (\d+) s", line)
        if m:
            times[m[1]] = (int(m[2]), int(m[3]))
    rows = []
    for name, (code, seconds) in times.items():
        history = list(csv.DictReader(open(folder / f"{name}-history.csv")))
        start = history[0]
        kept = max(history[1:], key=lambda h: float(h[SCORE])) if len(history) > 1 else start
        rows.append({"run": name, "exit": code, "seconds": seconds, "epochs": len(history) - 1,
                     "kept_epoch": int(kept["epoch"]),
                     "p1_before": float(start["val_precision_at_1"]), "p1": float(kept["val_precision_at_1"]),
                     "auc_before": float(start["val_roc_auc"]), "auc": float(kept["val_roc_auc"])})
    device = (folder / "device.txt").read_text().strip() if (folder / "device.txt").is_file() else "unknown"
    text = f"trained on: {device or 'CPU'}\n" + format_table(rows, [
        ("run", "run", "<18"), ("exit", "exit", ">4"), ("seconds", "wall s", ">6"), ("epochs", "epochs", ">6"),
        ("kept_epoch", "kept", ">4"), ("p1_before", "P@1 start", "9.3f"), ("p1", "P@1 kept", "8.3f"),
        ("auc_before", "AUC start", "9.3f"), ("auc", "AUC kept", "8.3f")])
    return rows, text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--name", default="training-summary")
    args = ap.parse_args()
    rows, text = summarise(args.folder)
    print(text)
    save_results(args.name, rows, text)


if __name__ == "__main__":
    main()

"""A catalogue build as a user runs it: images per second and peak memory, by model and worker processes.

    .venv/bin/python benchmarks/build_speed.py [--images 300] [--workers 0 2] [--models default builtin:efficientnet_lite0]
        [--memory-entries 10000]

Each build is `coinmatch catalog build` in a process of its own, on the first ``--images`` photos of the
real-pairs catalogue (benchmarks/common.py), timed from start to finish (start-up, model and index included);
peak memory is the largest sum of resident memory over the build process and its workers, sampled every 0.2 s.
``--memory-entries``: also a build of that many entries (the real photos repeated under new ids), ImageNet model,
default workers, for its peak memory.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import WORK, format_table, pairs_manifests, save_results

BIN = str(Path(sys.executable).with_name("coinmatch"))


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, MB."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for p in tree:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def timed_build(manifest: Path, model: str, workers: int | None, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    args = [BIN, "catalog", "build", str(out), str(manifest), "--model", model, "--json"]
    if workers is not None:
        args += ["--workers", str(workers)]
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"build failed: {' '.join(args)}")
    return {"seconds": seconds, "peak_mb": peak}


def subset(manifest: Path, n: int, name: str, repeat: bool = False) -> Path:
    rows = list(csv.DictReader(open(manifest, encoding="utf-8")))
    out = WORK / name
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for i in range(n):
            r = dict(rows[i % len(rows)])
            r["id"] = f"{r['id']}#{i // len(rows)}" if repeat else r["id"]
            w.writerow(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, os.cpu_count() or 1])
    ap.add_argument("--models", nargs="+", default=["default", "builtin:efficientnet_lite0"])
    ap.add_argument("--memory-entries", type=int, default=0)
    args = ap.parse_args()
    cat_csv, _ = pairs_manifests()
    manifest = subset(cat_csv, args.images, "build-speed.csv")
    from coinmatch.models.modelfile import DEFAULT_MODEL_FILE

    rows = []
    for model in args.models:
        source = str(DEFAULT_MODEL_FILE) if model == "default" else model
        for workers in args.workers:
            got = timed_build(manifest, source, workers, WORK / "build-speed")
            rows.append({"model": model, "workers": workers, "images": args.images, **got,
                         "images_per_s": args.images / got["seconds"]})
            print(rows[-1], flush=True)
    if args.memory_entries:
        big = subset(cat_csv, args.memory_entries, "build-memory.csv", repeat=True)
        got = timed_build(big, "builtin:efficientnet_lite0", None, WORK / "build-memory")
        rows.append({"model": "builtin:efficientnet_lite0", "workers": os.cpu_count(),
                     "images": args.memory_entries, **got, "images_per_s": args.memory_entries / got["seconds"]})
        print(rows[-1], flush=True)
        shutil.rmtree(WORK / "build-memory", ignore_errors=True)
    text = format_table(rows, [("model", "model", "<28"), ("workers", "workers", ">7"), ("images", "images", ">7"),
                               ("seconds", "seconds", "8.1f"), ("images_per_s", "images/s", "9.2f"),
                               ("peak_mb", "peak MB", "8.0f")])
    save_results("build_speed", rows, text)
    print(text)


if __name__ == "__main__":
    main()

"""The default model's rotation pooling at fewer angles: the accuracy and the cost of each, side by side.

    .venv/bin/python benchmarks/angles.py [--angles 8 4] [--images 100]

The default model pools its descriptor over 16 angles (16 backbone passes an image). This writes the same model
at each of ``--angles`` (same weights and whitening, the angles 360/n apart) to out/benchmarks/, times its network
on ``--images`` real coin crops (ms per image, batches as a build runs them), then scores each file with
benchmarks/retrieval.py's real-pairs protocol (photographed and catalogue-like, with and without verification):
results in benchmarks/results/angles.{txt,json} and angles-speed.{txt,json}.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from common import WORK, pairs_manifests, save_results
from coinmatch.catalog.manifest import read_manifest
from coinmatch.images import load_rgb
from coinmatch.models.modelfile import DEFAULT_MODEL_FILE, load_model, save_model
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_array


def variant(n: int) -> Path:
    """The default model pooled over ``n`` angles, written as a model file."""
    loaded = load_model(DEFAULT_MODEL_FILE)
    net = copy.deepcopy(loaded.network)
    net.rotations = n
    path = WORK / f"default-{n}-angles.cm"
    save_model(net.eval(), replace(loaded.config, rotations=n), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--angles", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--images", type=int, default=100)
    args = ap.parse_args()
    cat_csv, _ = pairs_manifests()
    crops = [prepare_array(load_rgb(e.faces[0].path)).crop for e in read_manifest(cat_csv)[:args.images]]
    files = {"16 angles": DEFAULT_MODEL_FILE, **{f"{n} angles": variant(n) for n in args.angles}}
    rows = []
    for n, path in files.items():
        emb = Embedder(str(path))
        emb.embed_with_angles(crops[:8])  # the ONNX export and the session's warm-up
        t = time.perf_counter()
        emb.embed_with_angles(crops)
        rows.append({"angles": n, "model": str(path), "ms_per_image": 1000 * (time.perf_counter() - t) / len(crops)})
        print(f"{n}: {rows[-1]['ms_per_image']:.1f} ms an image", flush=True)
    save_results("angles-speed", rows, "\n".join(f"{r['angles']:<36} {r['ms_per_image']:7.1f} ms an image"
                                                  for r in rows))
    subprocess.run([sys.executable, str(Path(__file__).with_name("retrieval.py")), "--skip-baselines",
                    "--skip-default", "--name", "angles", "--models", *[str(p) for p in list(files.values())[1:]]],
                   check=True)


if __name__ == "__main__":
    main()

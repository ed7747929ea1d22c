"""How far a model's vector moves when the same coin crop is turned, shifted or blurred.

    .venv/bin/python benchmarks/turns.py [--model runs/MODEL.cm | default] [--name turns]

A model that pools over 16 angles should barely move when its input is turned: a turn by 45 degrees leaves it
the same 16 views, up to interpolation. This measures, on 12 real euro query crops (every 7th of the pairs'
queries, found and cropped as search does, background kept), the mean cosine between a crop's vector and the
vector of the same crop after: a quarter turn (exact), a 1-pixel shift, a Gaussian blur, turns by 11.25, 30, 45
and 67 degrees (OpenCV, cubic, the corners that leave the square filled black), and a turn by 45 degrees and
back (the pixels' own place again, only the corners lost).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from common import format_table, pairs_manifests, save_results
from coinmatch.evaluation.protocol import read_queries
from coinmatch.images import load_rgb
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_array


def turn(crop: np.ndarray, degrees: float) -> np.ndarray:
    side = crop.shape[0]
    m = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(crop, m, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)


CHANGES = {
    "a quarter turn": lambda c: np.rot90(c).copy(),
    "a 1-pixel shift": lambda c: np.roll(c, 1, axis=1),
    "Gaussian blur, sigma 0.8": lambda c: cv2.GaussianBlur(c, (0, 0), 0.8),
    **{f"turned {a:g} degrees": (lambda a: lambda c: turn(c, a))(a) for a in (11.25, 30, 45, 67)},
    "turned 45 degrees and back": lambda c: turn(turn(c, 45), -45),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/whitening-2000-rings-v2.cm", help="a model file, or 'default'")
    ap.add_argument("--name", default="turns", help="results file name in benchmarks/results/")
    args = ap.parse_args()
    _, q_csv = pairs_manifests()
    queries = read_queries(q_csv, "coin_id")[::7][:12]
    crops = [prepare_array(load_rgb(q.path), q.name).crop for q in queries]
    embedder = Embedder(None if args.model == "default" else args.model)
    base = embedder.embed(crops)
    rows = [{"change": name, "cosine": float(np.mean(np.sum(base * embedder.embed([change(c) for c in crops]), 1)))}
            for name, change in CHANGES.items()]
    text = f"model {args.model}; mean cosine of a crop's vector with the changed crop's, {len(crops)} real crops\n"
    text += format_table(rows, [("change", "change", "<28"), ("cosine", "cosine", "7.3f")])
    print(text)
    save_results(args.name, [{"model": args.model, **r} for r in rows], text)


if __name__ == "__main__":
    main()

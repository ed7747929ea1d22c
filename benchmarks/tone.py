"""Does a photo's exposure hold the embedding back? Tone normalisation of every crop, catalogue and query alike.

    .venv/bin/python benchmarks/tone.py --model runs/recipe.cm [--tests euro singles] [--reuse] [--name tone]

Two of the recipe's six catalogue-like misses on the euro pairs are catalogue photos washed almost white
(10c-4191-026 and -028): in grey, their relief is a few grey levels deep where the query's is dozens. A grey
crop's tone curve can be taken out before the network, on the catalogue and on the queries alike:
  - ``equalised``: the grey crop's histogram equalised over the coin's disc (the crop's inscribed circle, as
    search crops it), the same look-up table applied to the whole crop. Any increasing change of tone
    (exposure, gamma, contrast) gives the same image up to the quantisation of its grey levels;
  - ``clahe``: OpenCV's contrast-limited adaptive equalisation (clip 2, 4 x 4 tiles) of the grey crop, which also
    evens out a lamp that lights one side of the coin more.
Scored with the model as it is (its whitening learnt on crops that were not normalised), by search's score
((pooled cosine + aligned cosine) / 2) against every entry, on the euro pairs and the singles' mined pairs
(benchmarks/query_scales.py's sets). The vectors are kept in out/benchmarks/ (``--reuse``).
"""

from __future__ import annotations


import cv2
import numpy as np

from common import WORK, search_crop, stored_descriptors
from query_scales import FORMS, TESTS, angle_embedder, model_arguments, real_sets, report, row, score
from coinmatch.models.runtime import Embedder
from coinmatch.segment import CROP_MARGIN, coin_mask

CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))


def equalised(crop: np.ndarray) -> np.ndarray:
    """The grey crop with its disc's histogram equalised (a look-up table applied to the whole crop), as RGB."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    disc = grey[coin_mask(grey.shape[0], 1 / (1 + CROP_MARGIN)) > 0]
    cdf = np.cumsum(np.bincount(disc, minlength=256)).astype(np.float64)
    lut = np.round(255 * (cdf - cdf[disc.min()]) / max(cdf[-1] - cdf[disc.min()], 1)).clip(0, 255).astype(np.uint8)
    return cv2.cvtColor(lut[grey], cv2.COLOR_GRAY2RGB)


def clahe(crop: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(CLAHE.apply(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)), cv2.COLOR_GRAY2RGB)


TONES = {"as is": lambda c: c, "equalised": equalised, "clahe": clahe}


def extract(embedder: Embedder, test: str) -> dict[str, np.ndarray]:
    cat, forms, true, names = real_sets(test)
    queries = {form: [search_crop(im) for im in images] for form, images in forms.items()}
    out = {"true": true, "names": names}
    for tone, fn in TONES.items():
        out[f"cat {tone}:v"], out[f"cat {tone}:a"] = embedder.embed_with_angles([fn(c) for c in cat], progress=True)
        for form, crops in queries.items():
            out[f"{form} {tone}:v"], out[f"{form} {tone}:a"] = embedder.embed_with_angles([fn(c) for c in crops])
    return out


def main() -> None:
    ap = model_arguments(__doc__, "tone")
    ap.add_argument("--tests", nargs="+", choices=sorted(TESTS), default=list(TESTS))
    ap.add_argument("--reuse", action="store_true", help="read the vectors of an earlier run back")
    args = ap.parse_args()
    embedder = angle_embedder(args.model)
    rows = []
    for test in args.tests:
        d, how = stored_descriptors(WORK / f"tone-{test}-{embedder.fingerprint[:12]}.npz", args.reuse,
                                    lambda: extract(embedder, test))
        d["test"] = TESTS[test]
        print(f"{TESTS[test]}: vectors {how}", flush=True)
        for form in FORMS:
            for tone in TONES:
                rows.append(row(d, form, tone, score(d, f"{form} {tone}", f"cat {tone}")))
    report(args.name, args.model, rows, ("tone", 10))


if __name__ == "__main__":
    main()

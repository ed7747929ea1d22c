"""A whitened model file with cell descriptors added, fitted as ``train --cells`` fits them, without fitting the
whitening again.

    .venv/bin/python benchmarks/add_cells.py --model runs/recipe.cm --out runs/recipe-cells.cm [--cells 64]
        [--cell-map N] [--fit learned|pca] [--limit 2000] [--type-column denomination] MANIFEST.csv...

``train --loss whitening --cells D`` fits the cell whitening on the training split's photos, as each coin lies,
after the whitening; neither fit depends on the other (models/network.py). So for a study this takes a model that
the recipe's command wrote, reads the same manifests (the training cache on disk: no coin is found again), splits
them as training does (the same seed) and fits the cells on the training split: the model that the recipe's command
with ``--cells D`` writes, in a minute instead of half an hour. Its vector and angle vectors stay the model's own.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from coinmatch.models.modelfile import build_network, load_model, save_model
from coinmatch.training.cache import TrainingCache, cache_size, load_cache
from coinmatch.training.cells import FITS, fit_cells
from coinmatch.training.loop import TrainConfig, split_validation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifests", nargs="+", help="the model's training manifests, as its command read them")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--cell-map", type=int, default=0, help="as train --cell-map (0: the backbone's own)")
    ap.add_argument("--fit", choices=FITS, default="learned", help="training.cells: learned from pairs, or PCA")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--type-column", default=None)
    args = ap.parse_args()
    model = load_model(args.model)
    if model.config.info.get("loss") != "whitening":
        raise SystemExit(f"{args.model}: not a whitened model ({model.config.info.get('loss')})")
    defaults = TrainConfig(manifests=args.manifests, out=args.out)
    t = time.perf_counter()
    size = model.config.image_size
    cache = TrainingCache.merge([load_cache(m, cache_size(size), args.type_column, limit=args.limit)
                                 for m in args.manifests])
    train_cache, _ = split_validation(cache, defaults.val_fraction, defaults.val_max, model.config.info.get("seed", 0))
    config = replace(model.config, cells=args.cells, cell_map=args.cell_map)
    net = build_network(config, weights="random")
    net.load_state_dict(model.network.state_dict(), strict=False)
    n = fit_cells(net.eval(), train_cache.plain(size), fit=args.fit, sources=list(train_cache.images),
                  seed=model.config.info.get("seed", 0))
    config.info = {**model.config.info, "cells": {"dim": args.cells, "map": net.cell_map, "fit": args.fit,
                                                  "fitted_on_cells": n, "seconds": round(time.perf_counter() - t, 1),
                                                  "added_to": args.model}}
    save_model(net.eval(), config, args.out)
    print(f"{args.out}: cells of {args.cells} dimensions fitted on {n} cells of {len(train_cache)} photos "
          f"in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()

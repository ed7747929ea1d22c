"""Batches of several independently augmented views per coin, drawn from the in-memory cache."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from torch.utils.data import DataLoader, Dataset

from coinmatch.training.augment import AugmentConfig, augment
from coinmatch.training.cache import TrainingCache


class AugmentedViews(Dataset):
    """Item i: an augmented view of cache image i (label = its class). Each call draws anew."""

    def __init__(self, cache: TrainingCache, out_size: int, seed: int = 0, cfg: AugmentConfig | None = None):
        self.cache = cache
        self.out_size = out_size
        self.cfg = cfg or AugmentConfig()
        self.seed = seed
        self.calls = 0

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int):
        # a generator per sample: reproducible for a seed, independent across views and workers
        self.calls += 1
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, i, self.calls, info.id if info else 0])
        view = augment(self.cache.images[i], rng, self.out_size, self.cfg)
        x = torch.from_numpy(view.transpose(2, 0, 1).astype(np.float32) / 255.0)
        return x, int(self.cache.labels[i]), int(self.cache.types[i])


def make_loader(cache: TrainingCache, out_size: int, batch_size: int, views: int, seed: int,
                workers: int = 0, epoch: int = 0) -> DataLoader:
    """Batches of ``batch_size // views`` coins x ``views`` views (MPerClassSampler). A set of fewer coins than
    a batch holds gives batches of every coin once."""
    if len(cache) < 2:
        raise ValueError(f"a batch needs at least 2 coins, the training set holds {len(cache)}")
    ds = AugmentedViews(cache, out_size, seed=seed * 1000 + epoch)
    batch_size = min(max(views * 2, batch_size - batch_size % views), len(cache) * views)
    length = len(cache) * views
    sampler = MPerClassSampler(cache.labels.tolist(), m=views, batch_size=batch_size, length_before_new_iter=length)
    # MPerClassSampler draws from numpy's global generator (pytorch-metric-learning's NUMPY_RANDOM),
    # the DataLoader from torch's: both are seeded, so one seed gives one sequence of batches
    np.random.seed(seed * 1000 + epoch)
    torch.manual_seed(seed * 1000 + epoch)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                      persistent_workers=False)

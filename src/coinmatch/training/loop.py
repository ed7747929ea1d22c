"""The training loop: cache -> augmented batches -> loss -> validation -> model file, with checkpoints.

Every epoch: train on augmented views, validate on held-out coins, append to history.csv, save
``last.pt`` (resumable), and write the model file when the validation score improves. Before the
first epoch the starting network is scored too (epoch 0) and written as the model to beat. Stops
early after ``patience`` epochs without improvement, or when ``max_minutes`` is spent.

With no options, :class:`TrainConfig` is the *recipe*, the model that measured best on real photos: a
learned whitening (closed form, no back-propagation: :mod:`coinmatch.training.whitening`) of grey ImageNet
features pooled over 16 angles and three rings, fitted on two augmented views of each coin, 512 dimensions at
224 px. The gradient losses (triplet, ArcFace) are there with ``loss=``; they measured below it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from coinmatch import CoinmatchError
from coinmatch.catalog.manifest import read_manifest, require_column
from coinmatch.files import replaced
from coinmatch.models.backbones import get_spec
from coinmatch.models.modelfile import ModelConfig, build_network, save_model
from coinmatch.models.network import CoinEmbedder
from coinmatch.prepare import prepare_photo
from coinmatch.training.cache import TrainingCache, cache_size, load_cache
from coinmatch.training.data import make_loader
from coinmatch.training.history import plot, write_history
from coinmatch.training.losses import LOSSES, build_loss, imprint
from coinmatch.training.validate import RealPairs, embed_arrays, fixed_views, onnx_embed, validate
from coinmatch.training.whitening import fit_whitening

log = logging.getLogger(__name__)


# each loss's own embedding size and input size, where the caller gives none: the whitening's are the recipe's
LOSS_SIZES = {"whitening": (512, 224), "triplet": (128, 128), "arcface": (128, 128), "subcenter-arcface": (128, 128)}


@dataclass
class TrainConfig:
    """A training run. The defaults are the recipe (see the module's docstring)."""

    manifests: list[str]
    out: str
    loss: str = "whitening"
    backbone: str = "efficientnet_lite0"
    weights: str | None = None  # backbone weights: None = packaged ImageNet, a path, "hub" or "random"
    dim: int | None = None  # the head's size; for whitening, the whitened size (None: LOSS_SIZES)
    image_size: int | None = None  # None: LOSS_SIZES
    grey: bool = True  # colour-blind network (see models/network.py)
    rotations: int = 16  # rotation pooling at inference (training passes see one angle: augmentation rotates)
    rings: bool = True  # pool the map over concentric rings as well as whole (see models/network.py)
    shrinkage: float = 0.1  # whitening only: pair covariance shrunk towards the identity
    whitening_views: int = 2  # whitening only: augmented views paired with each coin
    epochs: int = 12
    batch_size: int = 48
    views: int = 2
    lr: float = 3e-4
    loss_lr: float = 1e-2
    weight_decay: float = 1e-4
    freeze_blocks: int = 2  # stem + this many early blocks stay at their ImageNet weights
    mining: str = "semihard"
    margin: float | None = None  # the loss's default when None
    type_column: str | None = None
    val_fraction: float = 0.08
    val_max: int = 400
    val_pairs: str | None = None
    id_column: str = "coin_id"
    patience: int = 4
    seed: int = 0
    device: str | None = None
    workers: int = 0
    limit: int | None = None  # images per manifest (tests, quick looks)
    disk_cache: bool = True  # keep the prepared images on disk for the next run (training/cache.py)
    max_minutes: float | None = None
    resume: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        dim, size = LOSS_SIZES.get(self.loss, LOSS_SIZES["triplet"])
        self.dim = dim if self.dim is None else self.dim
        self.image_size = size if self.image_size is None else self.image_size

    def model_config(self, **overrides) -> ModelConfig:
        """The model file's config of these options (backbone, size, invariances, head size)."""
        return ModelConfig(**{"backbone": self.backbone, "dim": self.dim, "pooling": "gem",
                              "image_size": self.image_size, "grey": self.grey, "rotations": self.rotations,
                              "rings": self.rings, **overrides})

    @property
    def work_dir(self) -> Path:
        out = Path(self.out)
        return out.parent / (out.stem + ".train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def freeze_early_layers(net: CoinEmbedder, n_blocks: int) -> list[torch.nn.Module]:
    """Freeze the stem and the first ``n_blocks`` stages; returns the frozen modules (kept in eval mode)."""
    bb = net.backbone
    frozen: list[torch.nn.Module] = []
    if hasattr(bb, "blocks"):  # EfficientNet family
        frozen = [bb.conv_stem, bb.bn1, *list(bb.blocks)[:n_blocks]]
    elif hasattr(bb, "layer1"):  # ResNet family
        frozen = [bb.conv1, bb.bn1, *[getattr(bb, f"layer{i}") for i in range(1, n_blocks + 1) if hasattr(bb, f"layer{i}")]]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    return frozen


def load_real_pairs(path: str, id_column: str, size: int) -> RealPairs:
    """Real photographs grouped by id: the first of each group is the reference, the rest are queries."""
    groups: dict[str, list] = {}
    entries = read_manifest(path, id_column=None)  # a missing file, a malformed CSV, a missing image: said here
    require_column(path, id_column, "--id-column")
    for e in entries:
        key = e.metadata.get(id_column, e.id)
        for f in e.faces:
            groups.setdefault(key, []).append(f.path)
    refs, queries, labels = [], [], []
    for i, paths in enumerate(g for g in groups.values() if len(g) >= 2):
        refs.append(_crop(paths[0], size))
        for p in paths[1:]:
            queries.append(_crop(p, size))
            labels.append(i)
    if not queries:
        raise CoinmatchError(f"{path}: no id in column {id_column!r} has two photographs")
    return RealPairs(np.stack(refs), np.stack(queries), np.array(labels))


def _crop(path, size: int) -> np.ndarray:
    return cv2.resize(prepare_photo(path).crop, (size, size), interpolation=cv2.INTER_AREA)


MIN_COINS = 4  # split_validation holds 2 out at least, and a batch needs 2 coins


def split_validation(cache: TrainingCache, fraction: float, max_n: int, seed: int) -> tuple[TrainingCache, TrainingCache]:
    rng = np.random.default_rng(seed)
    n_val = int(min(max_n, max(2, round(fraction * len(cache)))))
    n_val = min(n_val, len(cache) - 2)
    order = rng.permutation(len(cache))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    train_cache = cache.subset(train)
    train_cache.labels = np.arange(len(train_cache))  # contiguous class ids for ArcFace
    return train_cache, cache.subset(val)


MINING = ("semihard", "hard", "all", "easy")  # TripletMarginMiner's type_of_triplets


def check_options(cfg: TrainConfig) -> None:
    """Refuse a bad option by name before any photo is read (finding the coins can take many minutes)."""
    if cfg.loss not in (*LOSSES, "whitening"):
        raise CoinmatchError(f"unknown loss {cfg.loss!r}; choose one of {', '.join((*LOSSES, 'whitening'))}")
    if cfg.mining not in MINING:
        raise CoinmatchError(f"unknown --mining {cfg.mining!r}; choose one of {', '.join(MINING)}")
    get_spec(cfg.backbone)
    if cfg.weights not in (None, "hub", "random") and not Path(cfg.weights).is_file():
        raise CoinmatchError(f"{cfg.weights}: weights file not found")
    at_least = {"--epochs": (cfg.epochs, 0), "--batch-size": (cfg.batch_size, 2), "--dim": (cfg.dim, 1),
                "--image-size": (cfg.image_size, 32), "--rotations": (cfg.rotations, 1),
                "--freeze-blocks": (cfg.freeze_blocks, 0), "--whitening-views": (cfg.whitening_views, 1),
                "--workers": (cfg.workers, 0), "--limit": (1 if cfg.limit is None else cfg.limit, 1)}
    for name, (value, least) in at_least.items():
        if value < least:
            raise CoinmatchError(f"{name} must be {least} or more, not {value}")
    if not 0 < cfg.shrinkage <= 1:
        raise CoinmatchError(f"--shrinkage must be above 0 and at most 1, not {cfg.shrinkage}")
    if cfg.lr <= 0 or (cfg.max_minutes is not None and cfg.max_minutes <= 0):
        raise CoinmatchError("--lr and --max-minutes must be above 0")
    check_device(cfg.device)


def check_device(device: str | None) -> None:
    """``--device``: cpu, or cuda (cuda:N) where torch sees that GPU."""
    if device is None or device == "cpu":
        return
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise CoinmatchError(f"--device {device}: choose cpu or cuda (cuda:N for the N-th GPU)")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(index or 0) >= count:
        raise CoinmatchError(f"--device {device}: torch sees {count} CUDA GPU{'s' * (count != 1)} here; "
                             f"leave --device out to use {'the GPU' if count else 'the CPU'}")


# the options a resumed run may change: how long it goes on, where and how fast it runs; every other option is what
# the checkpoint's run is made of, and resuming with one changed would mix two runs in one model
RESUMABLE_OPTIONS = {"manifests", "out", "epochs", "patience", "max_minutes", "resume", "device", "workers",
                     "disk_cache"}


def resume_state(cfg: TrainConfig, device: str) -> dict | None:
    """The checkpoint to go on from with ``--resume`` (None: none yet, the run starts from the beginning). One made
    with other options is refused by name; only --epochs, --patience, --max-minutes and the device may change."""
    ckpt = cfg.work_dir / "last.pt"
    if not cfg.resume:
        return None
    if not ckpt.is_file():
        log.warning("--resume: no checkpoint in %s yet; starting from the beginning", cfg.work_dir)
        return None
    try:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        saved = state["config"]
    except Exception as exc:  # noqa: BLE001 - whatever broke it, the file cannot be gone on from
        raise CoinmatchError(f"{ckpt}: unreadable checkpoint ({type(exc).__name__}: {exc}); "
                             f"start afresh without --resume") from exc
    now = asdict(cfg)

    def names(manifests: list[str]) -> list[str]:  # the same photos, whichever folder the run starts from
        return [Path(m).name for m in manifests]

    changed = [f"--{k.replace('_', '-')} {saved.get(k)} -> {now[k]}" for k in now
               if k not in RESUMABLE_OPTIONS and saved.get(k) != now[k]]
    if names(saved.get("manifests", [])) != names(cfg.manifests):
        changed.insert(0, f"manifests {', '.join(names(saved.get('manifests', [])))} -> {', '.join(names(cfg.manifests))}")
    if changed:
        raise CoinmatchError(f"{ckpt} was made with other options ({'; '.join(changed)}): resume with the options "
                             f"it was made with, or leave out --resume to start afresh")
    return state


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    check_options(cfg)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.resume and cfg.loss == "whitening":
        log.warning("--resume: a whitening is fitted in one pass and has no checkpoint to go on from; "
                    "fitting it from the start")
    state = resume_state(cfg, device) if cfg.loss != "whitening" else None
    # the real pairs first: a bad file is said before the training photos take minutes to prepare
    real = load_real_pairs(cfg.val_pairs, cfg.id_column, cfg.image_size) if cfg.val_pairs else None
    t = time.perf_counter()
    caches = [load_cache(m, cache_size(cfg.image_size), cfg.type_column, progress=progress, limit=cfg.limit,
                         disk=cfg.disk_cache, workers=cfg.workers) for m in cfg.manifests]
    cache = TrainingCache.merge(caches)
    cache_seconds = time.perf_counter() - t
    if len(cache) < MIN_COINS:
        raise CoinmatchError(
            f"{', '.join(map(str, cfg.manifests))}: {len(cache)} usable coin photo{'s' * (len(cache) != 1)} "
            f"({len(cache.skipped)} unreadable, {len(cache.dropped_duplicates)} duplicates dropped); training "
            f"needs at least {MIN_COINS}: 2 or more to train on and 2 held out to validate")
    work = cfg.work_dir  # made once the photos are known to be enough, so a refused run leaves no folder
    work.mkdir(parents=True, exist_ok=True)
    train_cache, val_cache = split_validation(cache, cfg.val_fraction, cfg.val_max, cfg.seed)
    views = fixed_views(val_cache, cfg.image_size)
    if cfg.loss == "whitening":
        fit = fit_whitening(cfg, train_cache, views, real, progress=progress)
        if _score(fit["rows"][1]) < _score(fit["rows"][0]):
            log.warning("the whitening scores below the network it was fitted on (%s); %s holds it all the same",
                        _score_name(fit["rows"][1]), cfg.out)
        write_history(fit["rows"], work)
        plot(fit["rows"], fit["val"], work, closed_form=True)
        return _summary(cfg, fit["rows"], 1, fit["images"] / max(fit["extract_seconds"], 1e-9), train_cache,
                        val_cache, cache, cache_seconds, t_start)

    model_config = cfg.model_config(trained=True)
    net = build_network(model_config, weights=cfg.weights).to(device)
    frozen = freeze_early_layers(net, cfg.freeze_blocks)
    n_classes = int(train_cache.labels.max()) + 1
    loss_fn, miner = build_loss(cfg.loss, n_classes, cfg.dim, cfg.mining, cfg.margin,
                                with_types=bool(cfg.type_column) and (train_cache.types >= 0).any())
    loss_fn = loss_fn.to(device)
    head_params = list(net.head.parameters()) + list(net.pool.parameters())
    head_ids = {id(p) for p in head_params}
    backbone_params = [p for p in net.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": backbone_params, "lr": cfg.lr}, {"params": head_params, "lr": cfg.lr * 10}]
    if list(loss_fn.parameters()):
        groups.append({"params": list(loss_fn.parameters()), "lr": cfg.loss_lr, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))

    history: list[dict] = []
    start_epoch, best, best_epoch, stale = 0, -np.inf, -1, 0
    ckpt = work / "last.pt"
    resuming = state is not None
    if hasattr(loss_fn, "W") and not resuming:  # each class's centre: the mean of its photos' embeddings
        coins = _clean_embeddings(net, train_cache, cfg.image_size, device)
        centres = np.zeros((n_classes, coins.shape[1]), np.float32)
        np.add.at(centres, train_cache.labels, coins)
        imprint(loss_fn, torch.from_numpy(centres), seed=cfg.seed)
    if resuming:
        net.load_state_dict(state["net"])
        loss_fn.load_state_dict(state["loss"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        sched.T_max = max(1, cfg.epochs)  # more --epochs than before: the cosine stretches to the new end
        start_epoch, best, best_epoch, stale = state["epoch"] + 1, state["best"], state["best_epoch"], state["stale"]
        history = state["history"]
        log.warning("resuming after epoch %d", state["epoch"] + 1)

    def write_model(row: dict) -> None:
        model_config.info = {"loss": cfg.loss, "epoch": row["epoch"], "manifests": cfg.manifests,
                             "validation": {k: v for k, v in row.items() if k.startswith(("val", "real"))},
                             "seed": cfg.seed, "freeze_blocks": cfg.freeze_blocks}
        save_model(net.eval(), model_config, cfg.out)

    def fast():  # validation through ONNX Runtime on CPU (the network as it is now); torch on CUDA
        return onnx_embed(net, model_config, work / "validation.onnx") if device == "cpu" else None

    if not resuming:
        # epoch 0: the starting network (ImageNet backbone, fresh head) is scored like every epoch and kept as the
        # model to beat, so the history shows whether training helps at all and a run never ends worse than it began
        t0 = time.perf_counter()
        val = validate(net, views, device, real, embed=fast())
        row = {"epoch": 0, "loss": None, "seconds": round(time.perf_counter() - t0, 1),
               **{k: v for k, v in val.items() if not k.startswith("_")}}
        history.append(row)
        best, best_epoch = _score(val), 0
        write_model(row)
        write_history(history, work)
    images_seen, train_seconds = 0, 0.0
    saved = start_epoch  # epochs whose checkpoint is on disk: what --resume goes on from
    try:
        for epoch in range(start_epoch, cfg.epochs):
            net.train()
            net.rotations = 1  # one angle per training pass: the augmentation rotates; pooling is for inference
            for m in frozen:
                m.eval()
            loader = make_loader(train_cache, cfg.image_size, cfg.batch_size, cfg.views, cfg.seed, cfg.workers, epoch)
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs} {cfg.loss}", unit="batch", disable=not progress)
            running, n_batches, t_epoch = 0.0, 0, time.perf_counter()
            for x, labels, types in bar:
                x, labels = x.to(device), labels.to(device)
                emb = net(x)
                if miner is not None:
                    if hasattr(miner, "types"):
                        miner.types = types
                    loss = loss_fn(emb, labels, miner(emb, labels))
                else:
                    loss = loss_fn(emb, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                value = loss.item()
                running = 0.9 * running + 0.1 * value if n_batches else value
                n_batches += 1
                images_seen += len(x)
                bar.set_postfix(loss=f"{running:.4f}")
            sched.step()
            net.rotations = cfg.rotations
            train_seconds += time.perf_counter() - t_epoch
            val = validate(net, views, device, real, embed=fast())
            row = {"epoch": epoch + 1, "loss": running, "seconds": round(time.perf_counter() - t_epoch, 1),
                   **{k: v for k, v in val.items() if not k.startswith("_")}}
            history.append(row)
            score = _score(val)
            if score > best:
                best, best_epoch, stale = score, epoch + 1, 0
                write_model(row)
            else:
                stale += 1
            with replaced(ckpt) as tmp:  # an interruption while saving keeps the last whole checkpoint
                torch.save({"net": net.state_dict(), "loss": loss_fn.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "epoch": epoch, "best": best, "best_epoch": best_epoch,
                            "stale": stale, "history": history, "config": asdict(cfg)}, tmp)
            saved = epoch + 1
            write_history(history, work)
            plot(history, val, work)  # every epoch, so a run can be watched and an interrupted one still shows
            if progress:
                tqdm.write(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
            if stale >= cfg.patience:
                log.warning("early stop: no improvement for %d epochs", stale)
                break
            if cfg.max_minutes and (time.perf_counter() - t_start) / 60 > cfg.max_minutes:
                log.warning("time budget of %g minutes spent", cfg.max_minutes)
                break
    except KeyboardInterrupt:
        log.warning("interrupted in epoch %d: %s holds the best epoch so far (%d); --resume goes on after epoch %d",
                    saved + 1, cfg.out, best_epoch, saved)
        raise
    if best_epoch == 0:
        log.warning("no epoch beat the starting network on the validation score: %s holds the starting network",
                    cfg.out)
    summary = _summary(cfg, history, best_epoch, images_seen / max(train_seconds, 1e-9), train_cache, val_cache,
                       cache, cache_seconds, t_start)
    summary["classes"] = n_classes
    return summary


def _score_name(row: dict) -> str:
    return "recall@1 on the real pairs" if "real_recall_at_1" in row else "held-out MAP@R"


def _score(val: dict) -> float:
    """What early stopping and the saved model follow: recall@1 on real photo pairs when given, else MAP@R."""
    return val.get("real_recall_at_1", val["val_map_at_r"]) + 1e-3 * val["val_map_at_r"]


def _clean_embeddings(net: CoinEmbedder, cache: TrainingCache, size: int, device: str, chunk: int = 512) -> np.ndarray:
    """The network's embedding of every cached coin as it is (no augmentation), one angle: imprinting's centres."""
    rotations, net.rotations = net.rotations, 1
    try:
        out = [embed_arrays(net, np.stack(cache.plain(size, s, s + chunk)), device) for s in range(0, len(cache), chunk)]
    finally:
        net.rotations = rotations
    return np.concatenate(out)


def _summary(cfg: TrainConfig, history: list[dict], best_epoch: int, images_per_s: float, train_cache: TrainingCache,
             val_cache: TrainingCache, cache: TrainingCache, cache_seconds: float, t_start: float) -> dict:
    return {"model": cfg.out, "best_epoch": best_epoch, "epochs_run": sum(h["epoch"] > 0 for h in history),
            "history": history,
            "train_images": len(train_cache), "val_images": len(val_cache),
            "duplicates_dropped": len(cache.dropped_duplicates), "skipped": cache.skipped,
            "cache_seconds": round(cache_seconds, 1), "train_images_per_s": images_per_s,
            "wall_seconds": round(time.perf_counter() - t_start, 1), "work_dir": str(cfg.work_dir)}

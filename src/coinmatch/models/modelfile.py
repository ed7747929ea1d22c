"""The model file: one file carrying the network's weights, its config and a fingerprint.

A catalogue records the fingerprint of the model that built it and refuses vectors from any
other. ``builtin:<backbone>`` names the untrained ImageNet model with pooled features (no file
needed); a path names a trained ``.cm`` file written by :func:`save_model`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from coinmatch.files import replaced
from coinmatch.models.backbones import DEFAULT_BACKBONE, ModelError, get_spec
from coinmatch.models.network import CoinEmbedder

FORMAT = "coinmatch-model"
FORMAT_VERSION = 1
BUILTIN_PREFIX = "builtin:"
DEFAULT_MODEL = BUILTIN_PREFIX + DEFAULT_BACKBONE


@dataclass
class ModelConfig:
    backbone: str = DEFAULT_BACKBONE
    dim: int | None = None  # None: the pooled backbone features, whole
    pooling: str = "gem"
    gem_p: float = 3.0
    image_size: int = 224
    grey: bool = False  # colour-blind input (see models/network.py)
    rotations: int = 1  # rotation pooling over this many angles
    rings: bool = False  # pool the map over concentric rings as well as whole
    whiten_dim: int | None = None  # learned whitening to this many dimensions
    trained: bool = False
    info: dict = field(default_factory=dict)  # training provenance: data, loss, epochs...

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


INVARIANCE_DEFAULTS = {"grey": False, "rotations": 1, "rings": False, "whiten_dim": None}
# options that earlier versions had, measured and not adopted (docs/research.md): a model file that holds them at
# these values (off) loads as before; one that used them is refused by name
RETIRED_OPTIONS = {"stages": 1, "disc": False, "mask": False, "contrast": False, "cells": 0, "cell_map": 0}


@dataclass
class LoadedModel:
    network: CoinEmbedder
    config: ModelConfig
    fingerprint: str
    source: str  # "builtin:..." or the file's path

    @property
    def dim(self) -> int:
        return int(self.network.out_dim)


def fingerprint_of(network: torch.nn.Module, config: ModelConfig) -> str:
    h = hashlib.sha256()
    cfg = asdict(config)
    cfg.pop("info", None)  # provenance notes do not change the vectors
    for key, default in INVARIANCE_DEFAULTS.items():  # models made before these options keep their fingerprint
        if cfg.get(key) == default:
            cfg.pop(key)
    h.update(json.dumps(cfg, sort_keys=True).encode())
    for name, tensor in network.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def build_network(config: ModelConfig, weights: str | None = None) -> CoinEmbedder:
    return CoinEmbedder(config.backbone, dim=config.dim, pooling=config.pooling, weights=weights, gem_p=config.gem_p,
                        grey=config.grey, rotations=config.rotations, whiten_dim=config.whiten_dim, rings=config.rings)


def builtin_model(backbone: str = DEFAULT_BACKBONE, weights: str | None = None) -> LoadedModel:
    spec = get_spec(backbone)
    config = ModelConfig(backbone=backbone, image_size=spec.input_size)
    net = build_network(config, weights=weights).eval()
    return LoadedModel(net, config, fingerprint_of(net, config), BUILTIN_PREFIX + backbone)


def save_model(network: CoinEmbedder, config: ModelConfig, path: str | Path) -> str:
    """Write the model file atomically; returns its fingerprint."""
    path = Path(path)
    fp = fingerprint_of(network, config)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": json.dumps(asdict(config)),
        "fingerprint": fp,
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
    }
    with replaced(path) as tmp:
        torch.save(payload, tmp)
    return fp


def load_model(source: str | Path | None = None) -> LoadedModel:
    """Load ``builtin:<backbone>`` (default) or a model file written by :func:`save_model`."""
    source = str(source) if source else DEFAULT_MODEL
    if source.startswith(BUILTIN_PREFIX):
        return builtin_model(source[len(BUILTIN_PREFIX):])
    path = Path(source)
    if not path.is_file():
        raise ModelError(f"{source}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{source}: not a coinmatch model file ({exc.__class__.__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{source}: not a coinmatch model file")
    if payload.get("version", 0) > FORMAT_VERSION:
        raise ModelError(f"{source}: made by a newer coinmatch (model format {payload['version']})")
    raw = json.loads(payload["config"])
    retired = sorted(k for k, off in RETIRED_OPTIONS.items() if k in raw and raw[k] != off)
    if retired:
        raise ModelError(f"{source}: made with option{'s' * (len(retired) > 1)} {', '.join(retired)}, which this "
                         f"coinmatch no longer has (measured and not adopted: docs/research.md); retrain without it")
    raw = {k: v for k, v in raw.items() if k not in RETIRED_OPTIONS}
    unknown = sorted(set(raw) - set(ModelConfig.__dataclass_fields__))
    if unknown:  # an option this version does not have would be dropped, and the vectors would differ
        raise ModelError(f"{source}: made by a newer coinmatch (options unknown here: {', '.join(unknown)})")
    config = ModelConfig.from_dict(raw)
    net = build_network(config, weights="random")
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"{source}: weights do not fit its config ({str(exc).splitlines()[0]})") from exc
    net.eval()
    fp = fingerprint_of(net, config)
    if fp != payload.get("fingerprint"):
        raise ModelError(f"{source}: fingerprint mismatch: the file is damaged")
    return LoadedModel(net, config, fp, str(path))

"""The model file: one file carrying the network's weights, its config and a fingerprint.

A catalogue records the fingerprint of the model that built it and refuses vectors from any
other. ``builtin:<backbone>`` names the untrained ImageNet model with pooled features (no file
needed); a path names a trained ``.cm`` file written by :func:`save_model`; ``None`` the default
model, :data:`DEFAULT_MODEL_FILE`, which ships inside the package (how it was made: ``make
default-model``, the README's "The default model").

A model whose backbone is the packaged ImageNet backbone, unchanged (every learned whitening), is
written *compact*: only what lies after the backbone, in float16; loading takes the backbone from
its PyPI package. The fingerprint covers the whole network either way.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from coinmatch.files import replaced
from coinmatch.models.backbones import DEFAULT_BACKBONE, ModelError, create_backbone, get_spec
from coinmatch.models.network import CoinEmbedder

FORMAT = "coinmatch-model"
FORMAT_VERSION = 2  # 2: compact files (backbone from its package); version 1 files load as before
BUILTIN_PREFIX = "builtin:"
IMAGENET_MODEL = BUILTIN_PREFIX + DEFAULT_BACKBONE
DEFAULT_MODEL_FILE = Path(__file__).with_name("default.cm")
BACKBONE_PREFIX = "backbone."


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

    def describe(self) -> str:
        """Which model this is and how it was made, in one line (``catalog info``'s "model")."""
        c, info = self.config, self.config.info
        if self.source.startswith(BUILTIN_PREFIX):
            name = f"ImageNet {c.backbone}, untrained"
        else:
            name = "the default model" if Path(self.source) == DEFAULT_MODEL_FILE else Path(self.source).name
        pooled = [f"{c.rotations} angles"] * (c.rotations > 1) + ["rings"] * c.rings
        parts = [name] + ["grey"] * c.grey + ["pooled over " + " and ".join(pooled)] * bool(pooled)
        if c.whiten_dim:
            parts.append(f"learned whitening to {c.whiten_dim} dimensions ({info.get('views', 1)} augmented views "
                         f"a coin)")
        elif c.trained:
            parts.append(f"trained ({info.get('loss', 'unknown loss')})")
        if info.get("manifests"):
            parts.append("fitted on " + ", ".join(Path(m).name for m in info["manifests"]))
        return ", ".join(parts)


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


def _packaged_backbone_unchanged(network: CoinEmbedder, config: ModelConfig) -> bool:
    """Whether the network's backbone is its packaged ImageNet backbone, weight for weight."""
    if get_spec(config.backbone).packaged_weights is None:
        return False
    base = create_backbone(config.backbone).state_dict()
    mine = network.backbone.state_dict()
    return base.keys() == mine.keys() and all(torch.equal(base[k], mine[k].detach().cpu()) for k in base)


def save_model(network: CoinEmbedder, config: ModelConfig, path: str | Path) -> str:
    """Write the model file atomically; returns its fingerprint.

    A network whose backbone is the packaged one, unchanged, is written compact: its other tensors only, in
    float16. They are rounded in ``network`` too, so that the network and the file have one fingerprint."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    compact = _packaged_backbone_unchanged(network, config)
    if compact:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()
                 if not k.startswith(BACKBONE_PREFIX)}
        network.load_state_dict(state, strict=False)  # copied into float32 parameters: rounded to float16
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION if compact else 1,  # a whole file stays readable by version 1 readers
        "config": json.dumps(asdict(config)),
        "fingerprint": fingerprint_of(network, config),
        "backbone": "packaged" if compact else "included",
        "state_dict": state,
    }
    with replaced(path) as tmp:
        torch.save(payload, tmp)
    return payload["fingerprint"]


def default_model() -> str:
    """The model used where none is named: ``$COINMATCH_MODEL`` where set (a file or ``builtin:<backbone>``), else
    the bundled default, :data:`DEFAULT_MODEL_FILE`."""
    return os.environ.get("COINMATCH_MODEL") or str(DEFAULT_MODEL_FILE)


def load_model(source: str | Path | None = None) -> LoadedModel:
    """Load ``builtin:<backbone>``, a model file written by :func:`save_model`, or (``None``) :func:`default_model`."""
    source = str(source) if source else default_model()
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
    compact = payload.get("backbone") == "packaged"
    net = build_network(config, weights=None if compact else "random")
    try:
        missing, unexpected = net.load_state_dict(payload["state_dict"], strict=not compact)
    except RuntimeError as exc:
        raise ModelError(f"{source}: weights do not fit its config ({str(exc).splitlines()[0]})") from exc
    if compact and (unexpected or any(not k.startswith(BACKBONE_PREFIX) for k in missing)):
        raise ModelError(f"{source}: weights do not fit its config ({len(unexpected)} unexpected, "
                         f"{len(missing)} missing tensors)")
    net.eval()
    fp = fingerprint_of(net, config)
    if fp != payload.get("fingerprint"):
        raise ModelError(f"{source}: fingerprint mismatch: the file is damaged" + (
            f", or the {config.backbone} weights installed are not the ones it was made with" if compact else ""))
    return LoadedModel(net, config, fp, str(path))

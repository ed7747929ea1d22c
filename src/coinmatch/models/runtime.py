"""Inference: ONNX Runtime by default (exported once per model, checked against torch), torch as fallback.

:class:`Embedder` turns square coin crops (uint8 RGB) into L2-normalised vectors, in batches.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from typing import TYPE_CHECKING

import cv2
import numpy as np

from coinmatch.files import replaced

if TYPE_CHECKING:  # torch is imported only when the torch path is used: ONNX Runtime alone starts fast
    from coinmatch.models.modelfile import LoadedModel

log = logging.getLogger(__name__)
ONNX_TOLERANCE = 1e-4


def cache_dir() -> Path:
    root = os.environ.get("COINMATCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "coinmatch")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resize_square(crop: np.ndarray, size: int) -> np.ndarray:
    """A square crop at the network's ``size`` px (area averaging to shrink, cubic to enlarge)."""
    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    interp = cv2.INTER_AREA if min(crop.shape[:2]) > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def to_batch(crops: list[np.ndarray], size: int) -> np.ndarray:
    """Square uint8 RGB crops -> float32 N x 3 x size x size in [0, 1]."""
    out = np.empty((len(crops), 3, size, size), np.float32)
    for i, crop in enumerate(crops):
        out[i] = resize_square(crop, size).transpose(2, 0, 1)
    out *= 1.0 / 255.0
    return out


def batch_size_for(rotations: int, batch_size: int = 32) -> int:
    """Photos per batch: a rotation-pooled model runs the backbone on every angle, so fewer photos go at once
    (the backbone's batch, and memory, stay as with one angle)."""
    return max(1, batch_size // max(1, rotations))


def onnx_path(backbone: str, fingerprint: str) -> Path:
    return cache_dir() / f"{backbone}-{fingerprint}.onnx"


def export_onnx(model: "LoadedModel", path: Path) -> Path:
    """Export the network with a dynamic batch axis and check it equals torch within 1e-4."""
    import onnxruntime as ort
    import torch

    size = model.config.image_size
    net = model.network.eval().cpu()
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with replaced(path) as tmp:  # checked before it takes the shared name
        with torch.no_grad(), warnings.catch_warnings():
            # the image size is fixed per model (to_batch resizes to it), so sizes read as constants are right
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(net, (example,), str(tmp), input_names=["pixels"], output_names=["embedding"],
                              dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
            expected = net(example).numpy()
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"pixels": example.numpy()})[0]
        err = float(np.abs(got - expected).max())
        if err > ONNX_TOLERANCE:
            raise RuntimeError(f"ONNX export differs from torch by {err:.2e} (> {ONNX_TOLERANCE})")
    return path


def onnx_session(path: Path, device: str):
    """An ONNX Runtime session on the device's provider (CUDA when asked and present), quiet logs."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


class Embedder:
    """Vectors for coin crops with a loaded model, through ONNX Runtime or torch."""

    def __init__(self, model: "LoadedModel | str | None" = None, backend: str = "onnx", device: str | None = None,
                 batch_size: int = 32, onnx_file: Path | None = None):
        """``onnx_file``: export there, afresh (a network that is still changing, as in training's validation),
        instead of once into the shared cache under the model's fingerprint."""
        import torch

        from coinmatch.models.modelfile import LoadedModel, load_model

        self.model = model if isinstance(model, LoadedModel) else load_model(model)
        self.batch_size = batch_size_for(self.model.config.rotations, batch_size)
        self.size = self.model.config.image_size
        self.dim = self.model.dim
        self.fingerprint = self.model.fingerprint
        self.source = self.model.source
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.backend = backend
        self._session = None
        if backend == "onnx":
            try:
                path = onnx_file or onnx_path(self.model.config.backbone, self.fingerprint)
                if onnx_file or not path.exists():
                    export_onnx(self.model, path)
                self._session = onnx_session(path, self.device)
            except Exception as exc:  # noqa: BLE001 - fall back, but say so
                log.warning("ONNX Runtime unavailable for this model (%s); using torch", exc)
                self.backend = "torch"
        if self.backend == "torch":
            self.model.network.to(self.device).eval()

    @classmethod
    def for_catalogue(cls, source: str, config: dict, fingerprint: str, dim: int, backend: str = "onnx",
                      device: str | None = None) -> "Embedder":
        """The embedder of a catalogue's model; straight from its ONNX export when there is one (no torch)."""
        path = onnx_path(config["backbone"], fingerprint)
        if backend == "onnx" and path.exists() and device in (None, "cpu"):
            obj = cls.__new__(cls)
            obj.model, obj.size, obj.dim = None, int(config["image_size"]), int(dim)
            obj.batch_size = batch_size_for(int(config.get("rotations", 1)))
            obj.fingerprint, obj.source, obj.device, obj.backend = fingerprint, source, "cpu", "onnx"
            obj._session = onnx_session(path, "cpu")
            return obj
        from coinmatch.models.modelfile import load_model

        return cls(load_model(source), backend=backend, device=device)

    def embed_batch(self, crops: list[np.ndarray]) -> np.ndarray:
        batch = to_batch(crops, self.size)
        if self._session is not None:
            return self._session.run(None, {"pixels": batch})[0]
        import torch

        with torch.no_grad():
            return self.model.network(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def embed(self, crops: list[np.ndarray], progress: bool = False) -> np.ndarray:
        from tqdm import tqdm

        out = np.zeros((len(crops), self.dim), np.float32)
        starts = range(0, len(crops), self.batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress or len(starts) < 2):
            out[start:start + self.batch_size] = self.embed_batch(crops[start:start + self.batch_size])
        return out

"""Inference: ONNX Runtime by default (exported once per model, checked against torch), torch as fallback.

:class:`Embedder` turns square coin crops (uint8 RGB) into L2-normalised vectors, in batches. A model that
pools over several angles (``rotations`` > 1) also gives, from the same pass, one vector per angle
(:meth:`Embedder.embed_with_angles`): the ONNX export has a second output, ``angles``.

An export is cached under the model's fingerprint *and* the code that builds the network (``code_version``):
a change to the network's code makes a new export rather than reusing a stale one.
"""

from __future__ import annotations

import functools
import hashlib
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


def has_angles(rotations: int) -> bool:
    """Whether a model of this many angles gives a vector per angle as well as the pooled one."""
    return int(rotations) > 1


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of what an ONNX export depends on besides the weights: the network's and the backbones' code, this
    module (the export), and the versions of torch and timm that traced it."""
    from importlib.metadata import version

    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("network.py", "backbones.py", "runtime.py"):
        h.update((here / name).read_bytes())
    for package in ("torch", "timm"):
        h.update(version(package).encode())
    return h.hexdigest()[:8]


def onnx_path(backbone: str, fingerprint: str, angles: bool = False) -> Path:
    """Where the export of this model (and this code: :func:`code_version`) is cached."""
    return cache_dir() / f"{backbone}-{fingerprint}-{code_version()}{'-angles' if angles else ''}.onnx"


def export_onnx(model: "LoadedModel", path: Path) -> Path:
    """Export the network with a dynamic batch axis and check it equals torch within 1e-4 (every output: the
    vector, and the angle vectors of a model that has them)."""
    import onnxruntime as ort
    import torch

    from coinmatch.models.network import WithAngles

    size = model.config.image_size
    net = model.network.eval().cpu()
    angles = has_angles(model.config.rotations)
    module = WithAngles(net).eval() if angles else net  # eval: the exporter restores the mode it finds
    outputs = ["embedding", "angles"][:2 if angles else 1]
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with replaced(path) as tmp:  # checked before it takes the shared name
        with torch.no_grad(), warnings.catch_warnings():
            # the image size is fixed per model (to_batch resizes to it), so sizes read as constants are right
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(module, (example,), str(tmp), input_names=["pixels"], output_names=outputs,
                              dynamic_axes={name: {0: "batch"} for name in ["pixels", *outputs]},
                              opset_version=17, dynamo=False)
            expected = module(example)
            expected = [t.numpy() for t in (expected if angles else (expected,))]
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"pixels": example.numpy()})
        err = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
        if err > ONNX_TOLERANCE:
            raise RuntimeError(f"ONNX export differs from torch by {err:.2e} (> {ONNX_TOLERANCE})")
    return path


def onnx_has_cuda() -> bool:
    """Whether this ONNX Runtime can run on a CUDA GPU (the plain ``onnxruntime`` wheel cannot)."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def onnx_session(path: Path, device: str):
    """An ONNX Runtime session on the device's provider (CUDA when asked and present), quiet logs."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and onnx_has_cuda():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    threads = os.environ.get("COINMATCH_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:  # fewer than every core: a shared machine, parallel test workers
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


class Embedder:
    """Vectors for coin crops with a loaded model, through ONNX Runtime or torch."""

    def __init__(self, model: "LoadedModel | str | None" = None, backend: str = "onnx", device: str | None = None,
                 batch_size: int | None = None, onnx_file: Path | None = None):
        """``batch_size``: the backbone's batch (photos x angles); by default 32, and 512 on a CUDA GPU.
        ``onnx_file``: export there, afresh (a network that is still changing, as in training's validation),
        instead of once into the shared cache under the model's fingerprint."""
        import torch

        from coinmatch.models.modelfile import LoadedModel, load_model

        self.model = model if isinstance(model, LoadedModel) else load_model(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        gpu = self.device.startswith("cuda")
        self.batch_size = batch_size_for(self.model.config.rotations, batch_size or (512 if gpu else 32))
        self.size = self.model.config.image_size
        self.dim = self.model.dim
        self.rotations = int(self.model.config.rotations)
        self.fingerprint = self.model.fingerprint
        self.source = self.model.source
        if backend == "onnx" and gpu and not onnx_has_cuda():
            backend = "torch"  # the GPU through torch, not ONNX Runtime on the CPU beside it
        self.backend = backend
        self._session = None
        if backend == "onnx":
            try:
                path = onnx_file or onnx_path(self.model.config.backbone, self.fingerprint, has_angles(self.rotations))
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
        rotations = int(config.get("rotations", 1))
        path = onnx_path(config["backbone"], fingerprint, has_angles(rotations))
        if backend == "onnx" and path.exists() and device in (None, "cpu"):
            obj = cls.__new__(cls)
            obj.model, obj.size, obj.dim, obj.rotations = None, int(config["image_size"]), int(dim), rotations
            obj.batch_size = batch_size_for(rotations)
            obj.fingerprint, obj.source, obj.device, obj.backend = fingerprint, source, "cpu", "onnx"
            obj._session = onnx_session(path, "cpu")
            return obj
        from coinmatch.models.modelfile import load_model

        return cls(load_model(source), backend=backend, device=device)

    @property
    def angles(self) -> bool:
        """Whether this model gives angle vectors (:meth:`embed_with_angles`)."""
        return has_angles(self.rotations)

    def embed_batch(self, crops: list[np.ndarray], angles: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Vectors (N x dim) and, when asked of a model of several angles, angle vectors (N x rotations x dim;
        else None, and not computed by torch)."""
        batch = to_batch(crops, self.size)
        angles = angles and self.angles
        if self._session is not None:
            names = ["embedding"] + (["angles"] if angles else [])
            out = self._session.run(names, {"pixels": batch})
            return out[0], out[1] if angles else None
        import torch

        with torch.no_grad():
            x = torch.from_numpy(batch).to(self.device)
            net = self.model.network
            if not angles:
                return net(x).float().cpu().numpy(), None
            vectors, per_angle = net.forward_with_angles(x)
            return vectors.float().cpu().numpy(), per_angle.float().cpu().numpy()

    def _embed(self, crops: list[np.ndarray], progress: bool, angles: bool) -> tuple[np.ndarray, np.ndarray | None]:
        from tqdm import tqdm

        out = np.zeros((len(crops), self.dim), np.float32)
        angles = angles and self.angles
        per_angle = np.zeros((len(crops), self.rotations, self.dim), np.float32) if angles else None
        starts = range(0, len(crops), self.batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress or len(starts) < 2):
            stop = start + self.batch_size
            out[start:stop], a = self.embed_batch(crops[start:stop], angles)
            if angles:
                per_angle[start:stop] = a
        return out, per_angle

    def embed_with_angles(self, crops: list[np.ndarray], progress: bool = False
                          ) -> tuple[np.ndarray, np.ndarray | None]:
        """Vectors and, for a model of several angles, angle vectors (else None), from one pass in batches."""
        return self._embed(crops, progress, angles=True)

    def embed(self, crops: list[np.ndarray], progress: bool = False) -> np.ndarray:
        """Vectors only (the angle vectors are neither computed by torch nor kept)."""
        return self._embed(crops, progress, angles=False)[0]

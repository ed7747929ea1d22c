"""Embed a manifest's images to a .npy file (for scripts and notebooks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coinmatch.catalog.manifest import read_manifest
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_photo


def embed_manifest(manifest: str | Path, out: str | Path, model: str | None = None, backend: str = "onnx",
                   progress: bool = True) -> tuple[int, int]:
    entries = read_manifest(manifest)
    faces = [(e.id, f) for e in entries for f in e.faces]
    embedder = Embedder(model, backend=backend)
    crops = [prepare_photo(f.path).crop for _, f in faces]
    vectors = embedder.embed(crops, progress=progress)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vectors)
    out.with_suffix(".ids.txt").write_text("".join(f"{eid}\t{f.relpath}\n" for eid, f in faces), encoding="utf-8")
    return vectors.shape

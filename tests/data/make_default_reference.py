"""Writes default-model.json: the bundled default model's fingerprint and its vectors of three demo photos, as the
code gives them. Rerun after `make default-model` (a new model) or a deliberate change of the vectors:

    .venv/bin/python tests/data/make_default_reference.py
"""

import json
from pathlib import Path

from coinmatch.models.modelfile import DEFAULT_MODEL_FILE, load_model
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import prepare_photo

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ["catalogue/10c-4191-004_a.jpg", "queries/10c-4191-004_b.jpg", "catalogue/1e-4197-000_a.jpg"]

if __name__ == "__main__":
    model = load_model(DEFAULT_MODEL_FILE)
    crops = [prepare_photo(ROOT / "demo" / "data" / p).crop for p in PHOTOS]
    vectors = Embedder(model).embed(crops)
    out = Path(__file__).with_name("default-model.json")
    out.write_text(json.dumps({"fingerprint": model.fingerprint, "photos": PHOTOS,
                               "vectors": [[round(float(x), 6) for x in v] for v in vectors]}) + "\n")
    print(f"wrote {out}: model {model.fingerprint}")

"""Put coinmatch catalogues' vectors into a Milvus collection, the road past one machine's memory, and check that
Milvus answers as the catalogues do.

    .venv/bin/pip install "pymilvus[milvus_lite]"      # Apache-2.0; not a coinmatch dependency
    .venv/bin/python examples/milvus_export.py coins.milvus.db CATALOGUE_DIR [CATALOGUE_DIR ...] [--check 200]

The first argument is a Milvus Lite file (in-process, for trying it) or a Milvus server's URI
(``http://host:19530``), where the same code runs unchanged. The mapping of a catalogue onto it:

- one Milvus row per catalogue image: primary key ``catalogue * 2**40 + row`` (rows never change and are never
  given again, so the key is stable across ``catalog add`` and ``catalog remove``); ``catalogue`` (the folder's
  name), ``row``, ``entry_id``, ``side``, ``metadata`` (the record, JSON) and ``vector`` (the exact float32
  vector, inner product); an HNSW index on it, as coinmatch chooses past 10,000 images;
- the model fingerprint in the collection's description: vectors of different models never share a collection;
- the angle vectors (16 KB an image) and local features (about 68 KB) stay in each catalogue's SQLite file, read
  by row for the shortlist only: re-scoring and verification need 20 rows a query, not the archive.

A query is then: embed the photo with the catalogue's model (``coinmatch.models.runtime.Embedder``), ask Milvus for
its nearest 100, and re-score and verify those rows from the catalogue(s) they name. ``--check N`` searches N of
the catalogues' own vectors both ways and prints how many of the ten nearest agree.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

from coinmatch.catalog.store import Catalogue

COLLECTION = "coin_images"
CATALOGUE_SHIFT = 2**40


def create(client: MilvusClient, dim: int, fingerprint: str) -> None:
    if client.has_collection(COLLECTION):
        client.drop_collection(COLLECTION)
    schema = client.create_schema(auto_id=False, description=f"coinmatch model {fingerprint}")
    schema.add_field("key", DataType.INT64, is_primary=True)
    schema.add_field("catalogue", DataType.VARCHAR, max_length=256)
    schema.add_field("row", DataType.INT64)
    schema.add_field("entry_id", DataType.VARCHAR, max_length=1024)
    schema.add_field("side", DataType.VARCHAR, max_length=16)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type="IP", params={"M": 32, "efConstruction": 200})
    client.create_collection(COLLECTION, schema=schema, index_params=index)


def export(client: MilvusClient, number: int, cat: Catalogue, batch: int = 2000) -> int:
    rows = cat.rows()
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        records = {r.row: r for r in cat.images(part)}
        vectors = cat.vectors(part)
        client.insert(COLLECTION, [
            {"key": number * CATALOGUE_SHIFT + r, "catalogue": cat.root.name, "row": r,
             "entry_id": records[r].entry_id, "side": records[r].side or "", "metadata": records[r].metadata,
             "vector": v.tolist()} for r, v in zip(part, vectors)])
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("milvus", help="a Milvus Lite file (coins.milvus.db) or a server URI")
    ap.add_argument("catalogues", nargs="+", type=Path)
    ap.add_argument("--check", type=int, default=200, help="catalogue vectors searched both ways")
    args = ap.parse_args()
    cats = [Catalogue.open(p) for p in args.catalogues]
    fingerprints = {c.fingerprint for c in cats}
    if len(fingerprints) > 1:
        raise SystemExit("the catalogues were built by different models: their vectors cannot share a collection")
    client = MilvusClient(args.milvus)
    create(client, int(cats[0].meta("dim")), fingerprints.pop())
    t = time.perf_counter()
    total = sum(export(client, i, c) for i, c in enumerate(cats))
    client.flush(COLLECTION)
    print(f"{total} images from {len(cats)} catalogue(s) into {args.milvus} in {time.perf_counter() - t:.1f} s")

    rng = np.random.default_rng(0)
    agree, times = [], []
    for _ in range(args.check):
        c = rng.integers(len(cats))
        row = int(rng.choice(cats[c].rows()))
        query = cats[c].vectors([row])
        t = time.perf_counter()
        hits = client.search(COLLECTION, data=query.tolist(), limit=10, output_fields=["catalogue", "row"],
                             search_params={"params": {"ef": 128}})[0]
        times.append(time.perf_counter() - t)
        got = {(h["entity"]["catalogue"], h["entity"]["row"]) for h in hits}
        want = set()
        scored = []
        for other in cats:
            s, r = other.search(query, 10)
            scored += [(float(a), other.root.name, int(b)) for a, b in zip(s[0], r[0]) if b >= 0]
        want = {(name, r) for _, name, r in sorted(scored, reverse=True)[:10]}
        agree.append(len(got & want) / 10)
    print(f"ten nearest, Milvus against the catalogues: {np.mean(agree):.3f} agree over {args.check} queries; "
          f"Milvus median {1000 * np.median(times):.1f} ms a query")
    print(json.dumps({"images": total, "agreement@10": float(np.mean(agree)),
                      "milvus_ms_median": 1000 * float(np.median(times))}))
    client.close()
    for c in cats:
        c.close()


if __name__ == "__main__":
    main()

"""The catalogue: records in SQLite, vectors in a faiss index, read from CSV manifests."""

from coinmatch.catalog.manifest import Entry, Face, ManifestError, read_manifest
from coinmatch.catalog.store import Catalogue, CatalogueError

__all__ = ["Catalogue", "CatalogueError", "Entry", "Face", "ManifestError", "read_manifest"]

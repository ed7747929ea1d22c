"""The catalogue: records in SQLite, vectors in a faiss index, read from CSV manifests.

The store (and faiss with it) is imported when first asked for: reading a manifest, as training does, needs
neither."""

from coinmatch.catalog.manifest import Entry, Face, ManifestError, read_manifest

__all__ = ["Catalogue", "CatalogueError", "Entry", "Face", "ManifestError", "read_manifest"]


def __getattr__(name: str):
    if name in ("Catalogue", "CatalogueError"):
        from coinmatch.catalog import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Changing a catalogue: adding entries, appending a build's chunks, removing entries, making the index again,
and upgrading a catalogue of the older format. Each change is one SQLite transaction that also points the
catalogue at the index file written for it (:mod:`coinmatch.catalog.store` describes the layout); the methods
here are :class:`coinmatch.catalog.store.Catalogue`'s."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

from coinmatch.catalog import index as vindex
from coinmatch.catalog.folders import CatalogueError

FORMAT_VERSION = 2  # 2: exact vectors in SQLite, index ids = rows (a version 1 catalogue is upgraded on opening)
# made by the schema; also on adding angle vectors to a catalogue made before they were kept
ANGLES_TABLE = ("CREATE TABLE IF NOT EXISTS angles (\n"
                "    row INTEGER PRIMARY KEY REFERENCES images(row), vectors BLOB NOT NULL)")
VECTORS_TABLE = "CREATE TABLE IF NOT EXISTS vectors (row INTEGER PRIMARY KEY REFERENCES images(row), vector BLOB NOT NULL)"


@dataclass
class NewImage:
    """One face to be added: its record, vector, thumbnail and (optionally) local features."""

    entry_id: str
    side: str | None
    path: str
    relpath: str
    vector: np.ndarray
    thumbnail: np.ndarray | None
    found: bool
    circle: tuple[float, float, float]
    warnings: list[str]
    features: tuple[str, bytes, bytes] | None = None  # (method, keypoints, descriptors)
    angles: np.ndarray | None = None  # rotations x dim: the model's vector at each angle, when it has several




class Writes:
    """The writing half of a catalogue (a mixin of :class:`coinmatch.catalog.store.Catalogue`)."""

    def _upgrade(self) -> None:
        """A version 1 catalogue (vectors in the index only, index positions = rows) made version 2: its vectors
        copied into SQLite and its index made again with rows as ids, in one transaction."""
        old = vindex.read(str(self.root / self.meta("vectors_file")))
        n = old.ntotal
        if n != len(self):
            raise CatalogueError(f"{self.root}: index holds {n} vectors but the records {len(self)}: the catalogue "
                                 f"is inconsistent; rebuild it")
        vectors = old.reconstruct_n(0, n) if n else np.zeros((0, old.d), np.float32)
        kind = "hnsw" if "HNSW" in self.meta("index_factory", "") else "flat"
        try:
            with self._transaction():
                self.db.execute(VECTORS_TABLE)
                self.db.executemany("INSERT INTO vectors VALUES (?, ?)", (
                    (i, np.ascontiguousarray(v, np.float32).tobytes()) for i, v in enumerate(vectors)))
                self._set_meta({"index_kind": kind, "next_row": n, "format_version": FORMAT_VERSION})
                self.db.execute("DELETE FROM meta WHERE key='index_factory'")
                self._write_index(vindex.make(kind, old.d, np.arange(n), vectors))
        except sqlite3.OperationalError as exc:
            raise CatalogueError(f"{self.root}: made by an older coinmatch and cannot be upgraded here ({exc}); "
                                 f"make the folder writable or rebuild the catalogue") from exc
        self._after_write()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One SQLite transaction: committed when the block ends, rolled back if it raises."""
        self.db.execute("BEGIN")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def _set_meta(self, values: dict) -> None:
        """Meta values set inside the caller's transaction."""
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])

    def add(self, entries: dict[str, dict], images: list[NewImage]) -> int:
        """Append entries (id -> metadata) and their images, vectors and index in one atomic step; returns rows
        added. The index grows in place, or is made again where the catalogue's size now calls for another kind."""
        return self._write(lambda: self._insert(entries, images))

    def append(self, entries: dict[str, dict], images: list[NewImage], meta: dict | None = None) -> int:
        """Records and vectors only, with ``meta`` set, in one transaction; the index is left as it was until
        :meth:`reindex` (a build appends chunk by chunk, then indexes once)."""
        self._sweep()
        with self._transaction():
            self._insert(entries, images)
            self._set_meta(meta or {})
        self._index = None
        return len(images)

    def reindex(self) -> None:
        """Make the index again from the stored vectors, of the kind the catalogue's size calls for."""
        self._write(lambda: 0, rebuild=True)

    def remove(self, entry_ids: Iterable[str]) -> int:
        """Take entries out: records, vectors, local features, angle vectors, thumbnails and their index rows, in
        one atomic step. Unknown ids are refused and nothing is removed. Returns the image rows removed."""
        entry_ids = list(dict.fromkeys(str(e) for e in entry_ids))
        unknown = [e for e in entry_ids if not self.has_entry(e)]
        if unknown:
            raise CatalogueError(f"{self.root}: no entry {unknown[0]!r}; nothing was removed")
        rows = [r for e in entry_ids for r, _ in self.entry_rows(e)]
        thumbs = [t for (t,) in self._where_in("SELECT thumb FROM images WHERE thumb IS NOT NULL AND row IN", rows)]

        def delete() -> int:
            for table in ("features", "angles", "vectors", "images"):
                if table != "angles" or self._rows_in("angles"):
                    list(self._where_in(f"DELETE FROM {table} WHERE row IN", rows))
            self.db.executemany("DELETE FROM entries WHERE id=?", [(e,) for e in entry_ids])
            return len(rows)

        removed = self._write(delete, drop=rows)
        for t in thumbs:
            (self.root / t).unlink(missing_ok=True)
        return removed

    def _write(self, change, drop: list[int] | None = None, rebuild: bool = False) -> int:
        """Run ``change`` (SQLite writes returning new rows to index, or a count) in a transaction, bring the
        index up to date in a new generation file, and commit both as one."""
        self._sweep()
        index = faiss.clone_index(self.index) if not rebuild else None
        with self._transaction():
            result = change()
            kind = vindex.choose(self.meta("index_kind", "flat"), len(self))
            if index is not None and vindex.kind_of(index) == kind and (drop is None or vindex.remove(index, drop)):
                if not drop and isinstance(result, list) and result:
                    index.add_with_ids(self.vectors(result), np.asarray(result, np.int64))
            else:
                rows = self.rows()
                index = vindex.make(kind, int(self.meta("dim")), np.asarray(rows, np.int64), self.vectors(rows))
            self._write_index(index)
        self._after_write()
        return len(result) if isinstance(result, list) else result

    def _write_index(self, index: faiss.Index) -> None:
        """Write ``index`` to the next generation file and point the catalogue at it (inside the caller's
        transaction); the file it replaces is removed once that commits (:meth:`_after_write`)."""
        old = self.meta("vectors_file")
        gen = int(old.split("-")[1].split(".")[0]) + 1
        faiss.write_index(index, str(self.root / f"vectors-{gen}.faiss"))
        self.db.execute("UPDATE meta SET value=? WHERE key='vectors_file'", (f"vectors-{gen}.faiss",))
        self.db.execute("UPDATE meta SET value=? WHERE key='updated'", (time.strftime("%Y-%m-%dT%H:%M:%S"),))
        self._index = vindex.configure(index)

    def _after_write(self) -> None:
        self._index = None
        self._sweep()

    def _insert(self, entries: dict[str, dict], images: list[NewImage]) -> list[int]:
        """Insert entries and images (inside the caller's transaction); returns the new image rows."""
        if not images:
            return []
        dim = int(self.meta("dim"))
        vecs = np.vstack([im.vector for im in images]).astype(np.float32)
        if vecs.shape[1] != dim:
            raise CatalogueError(f"{self.root}: vectors have {dim} dimensions, the new ones {vecs.shape[1]}")
        start = int(self.meta("next_row"))
        # angle vectors only where every image has them: a catalogue made without them stays without
        with_angles = all(im.angles is not None for im in images) and (len(self) == 0 or self.has_angles())
        thumbs = self.root / "thumbs"
        thumbs.mkdir(exist_ok=True)
        from coinmatch.images import save_rgb

        seq = self.db.execute("SELECT COALESCE(MAX(seq), -1) FROM entries").fetchone()[0] + 1
        if with_angles:  # a catalogue made before angle vectors were kept has no such table
            self.db.execute(ANGLES_TABLE)
        for eid, meta in entries.items():
            if self.has_entry(eid):
                raise CatalogueError(f"{self.root}: entry {eid!r} is already in the catalogue")
            self.db.execute("INSERT INTO entries VALUES (?, ?, ?)", (eid, seq, json.dumps(meta, ensure_ascii=False)))
            seq += 1
        for i, im in enumerate(images):
            row = start + i
            thumb = None
            if im.thumbnail is not None:
                thumb = f"thumbs/{row}.jpg"
                save_rgb(im.thumbnail, self.root / thumb, quality=85)
            self.db.execute("INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            (row, im.entry_id, im.side, im.path, im.relpath, thumb, int(im.found), *im.circle,
                             json.dumps(im.warnings)))
            self.db.execute("INSERT INTO vectors VALUES (?,?)", (row, vecs[i].tobytes()))
            if im.features is not None:
                self.db.execute("INSERT INTO features VALUES (?,?,?,?)", (row, *im.features))
            if with_angles:
                if im.angles.ndim != 2 or im.angles.shape[1] != dim:
                    raise CatalogueError(f"{self.root}: angle vectors of {im.path} are {im.angles.shape}, "
                                         f"not angles x {dim}")
                self.db.execute("INSERT INTO angles VALUES (?,?)",
                                (row, np.ascontiguousarray(im.angles, np.float16).tobytes()))
        self.db.execute("UPDATE meta SET value=? WHERE key='next_row'", (str(start + len(images)),))
        return list(range(start, start + len(images)))

    def _sweep(self) -> None:
        """Remove vector files that a crashed write left behind."""
        current = self.meta("vectors_file")
        for f in self.root.glob("vectors-*.faiss"):
            if f.name != current:
                f.unlink(missing_ok=True)

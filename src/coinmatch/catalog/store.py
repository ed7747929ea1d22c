"""A catalogue on disk: one folder, records and exact vectors in SQLite, a faiss index made from them.

Layout::

    CATALOGUE/
      catalog.sqlite      meta (model fingerprint, index file and kind, calibration...), entries, images,
                          vectors (float32, the exact ones), features, angle vectors (a model of several angles:
                          one vector per angle, float16)
      vectors-<gen>.faiss the index (:mod:`coinmatch.catalog.index`): its ids are images.row
      model.cm            a copy of the model file (absent for a built-in model)
      thumbs/<row>.jpg    small crops for display

An image's row never changes and is never given again once removed. Writes are atomic: a changed index goes to a
new generation file, and the SQLite transaction that changes the records also points ``meta.vectors_file`` at
it. A crash before that commit leaves the last good catalogue; files left over from it are removed on the next
write.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from coinmatch.catalog import index as vindex
from coinmatch.catalog.folders import DB_NAME, CatalogueError, is_catalogue, recover_folder
from coinmatch.catalog.writes import ANGLES_TABLE, FORMAT_VERSION, VECTORS_TABLE, NewImage, Writes
from coinmatch.segment import FINDER_VERSION

__all__ = ["Catalogue", "CatalogueError", "DB_NAME", "FORMAT_VERSION", "ImageRecord", "NewImage", "SCHEMA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, metadata TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS images (
    row INTEGER PRIMARY KEY, entry_id TEXT NOT NULL REFERENCES entries(id), side TEXT,
    path TEXT NOT NULL, relpath TEXT NOT NULL, thumb TEXT,
    found INTEGER NOT NULL, cx REAL, cy REAL, r REAL, warnings TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS images_entry ON images(entry_id);
CREATE TABLE IF NOT EXISTS features (
    row INTEGER PRIMARY KEY REFERENCES images(row), method TEXT NOT NULL,
    keypoints BLOB NOT NULL, descriptors BLOB NOT NULL);
""" + VECTORS_TABLE + ";\n" + ANGLES_TABLE + ";\n"


@dataclass
class ImageRecord:
    row: int
    entry_id: str
    side: str | None
    path: str
    relpath: str
    thumb: str | None
    metadata: dict


class Catalogue(Writes):
    """An open catalogue. Use :meth:`create` for a new one and :meth:`open` for an existing one."""

    def __init__(self, root: Path, db: sqlite3.Connection):
        self.root = root
        self.db = db
        self._index: faiss.Index | None = None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, model_fingerprint: str, model_source: str, model_config: dict, dim: int,
               model_file: str | Path | None = None, index: str = "auto",
               model_name: str = "", extra_meta: dict | None = None) -> "Catalogue":
        """An empty catalogue. ``index``: the kind of vector index (:mod:`coinmatch.catalog.index`; ``auto``
        chooses by size). ``model_name``: which model it holds and how it was made, in words."""
        index = vindex.check_kind(index)
        root = Path(root)
        if is_catalogue(root):
            raise CatalogueError(f"{root}: a catalogue is already there")
        root.mkdir(parents=True, exist_ok=True)
        (root / "thumbs").mkdir(exist_ok=True)
        if model_file is not None:
            shutil.copyfile(model_file, root / "model.cm")
            model_source = "model.cm"
        db = sqlite3.connect(root / DB_NAME, check_same_thread=False)  # callers that share it across threads lock
        db.executescript(SCHEMA)
        empty = vindex.make(vindex.choose(index, 0), dim, np.zeros(0, np.int64), np.zeros((0, dim), np.float32))
        faiss.write_index(empty, str(root / "vectors-0.faiss"))
        meta = {"format_version": FORMAT_VERSION, "model_fingerprint": model_fingerprint,
                "model_source": model_source, "model_name": model_name, "model_config": json.dumps(model_config),
                "dim": dim, "index_kind": index, "vectors_file": "vectors-0.faiss", "next_row": 0,
                "coin_finder": FINDER_VERSION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **(extra_meta or {})}
        with db:
            db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
        return cls(root, db)

    @classmethod
    def open(cls, root: str | Path) -> "Catalogue":
        root = Path(root)
        recover_folder(root)
        if not root.exists():
            raise CatalogueError(f"{root}: catalogue not found")
        if not is_catalogue(root):
            raise CatalogueError(f"{root}: not a coinmatch catalogue (no {DB_NAME})")
        try:
            db = sqlite3.connect(root / DB_NAME, check_same_thread=False)
            db.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CatalogueError(f"{root / DB_NAME}: damaged catalogue database ({exc})") from exc
        cat = cls(root, db)
        version = int(cat.meta("format_version", "0"))
        if version > FORMAT_VERSION:
            raise CatalogueError(f"{root}: made by a newer coinmatch")
        if version < FORMAT_VERSION:
            cat._upgrade()
        return cat

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalogue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- meta ------------------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str | None) -> None:
        with self.db:
            if value is None:
                self.db.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    @property
    def fingerprint(self) -> str:
        return self.meta("model_fingerprint")

    @property
    def model_source(self) -> str:
        src = self.meta("model_source")
        return str(self.root / src) if src == "model.cm" else src

    def check_model(self, fingerprint: str, source: str = "the model") -> None:
        if fingerprint != self.fingerprint:
            raise CatalogueError(
                f"{self.root}: built by model {self.fingerprint} ({self.meta('model_source')}), but {source} is "
                f"model {fingerprint}: vectors of different models cannot be compared; use the catalogue's own "
                f"model or rebuild the catalogue")

    # -- vectors ---------------------------------------------------------------------------------
    @property
    def index(self) -> faiss.Index:
        if self._index is None:
            self._index = vindex.read(str(self.root / self.meta("vectors_file")))
            if self._index.ntotal != len(self):
                raise CatalogueError(f"{self.root}: index holds {self._index.ntotal} vectors but the records "
                                     f"{len(self)}: the catalogue is inconsistent; rebuild it")
        return self._index

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def n_entries(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def vectors(self, rows: Iterable[int] | None = None) -> np.ndarray:
        """The exact vectors of these image rows (every row's, in order, by default) as len(rows) x dim float32,
        in the order asked."""
        rows = self.rows() if rows is None else [int(r) for r in rows]
        dim = int(self.meta("dim"))
        found = {}
        for row, blob in self._where_in("SELECT row, vector FROM vectors WHERE row IN", rows):
            if not isinstance(blob, bytes) or len(blob) != 4 * dim:
                raise CatalogueError(f"{self.root}: the vector of image row {row} is damaged; rebuild the catalogue")
            found[row] = np.frombuffer(blob, np.float32)
        missing = [r for r in rows if r not in found]
        if missing:
            raise CatalogueError(f"{self.root}: no image row {missing[0]}")
        return np.stack([found[r] for r in rows]) if rows else np.zeros((0, dim), np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner products (cosine for unit vectors) and rows of the k nearest images, best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.shape[1] != self.index.d:
            raise CatalogueError(f"{self.root}: vectors have {self.index.d} dimensions, the query {queries.shape[1]}")
        k = max(1, min(k, self.index.ntotal))
        if self.index.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return vindex.search(self.index, queries, k, self.vectors)

    # -- records ---------------------------------------------------------------------------------
    def has_entry(self, entry_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM entries WHERE id=?", (entry_id,)).fetchone() is not None

    def images(self, rows: Iterable[int]) -> list[ImageRecord]:
        rows = [int(r) for r in rows]
        if not rows:
            return []
        found = {}
        q = ("SELECT i.row, i.entry_id, i.side, i.path, i.relpath, i.thumb, e.metadata FROM images i "
             "JOIN entries e ON e.id = i.entry_id WHERE i.row IN")
        for row, eid, side, path, rel, thumb, meta in self._where_in(q, rows):
            found[row] = ImageRecord(row, eid, side, path, rel, thumb, json.loads(meta))
        return [found[r] for r in rows]

    def _where_in(self, query: str, rows: list[int]) -> Iterable[tuple]:
        """The result rows of ``query`` (ending in "... IN") for these image rows, asked in chunks of 900 (SQLite
        allows a bounded number of parameters)."""
        for start in range(0, len(rows), 900):
            chunk = rows[start:start + 900]
            yield from self.db.execute(f"{query} ({','.join('?' * len(chunk))})", chunk)

    def find_entries(self, text: str = "", limit: int = 50, offset: int = 0) -> tuple[int, list[tuple[str, dict]]]:
        """Entries in catalogue order whose id or any metadata value contains every word of ``text`` (any case):
        (how many match, the ``limit`` of them from ``offset`` as (id, metadata))."""
        words = [w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for w in text.split()]
        term = ("(e.id LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM json_each(e.metadata) j "
                "WHERE CAST(j.value AS TEXT) LIKE ? ESCAPE '\\'))")
        where = " AND ".join([term] * len(words)) or "1"
        args = [a for w in words for a in (f"%{w}%", f"%{w}%")]
        total = self.db.execute(f"SELECT COUNT(*) FROM entries e WHERE {where}", args).fetchone()[0]
        rows = self.db.execute(f"SELECT e.id, e.metadata FROM entries e WHERE {where} ORDER BY e.seq LIMIT ? OFFSET ?",
                               [*args, int(limit), int(offset)])
        return total, [(eid, json.loads(meta)) for eid, meta in rows]

    def image_source(self, row: int) -> tuple[str, bool, tuple[float, float, float]]:
        """Where an image was read from when it was added, whether its coin was found, and its circle there."""
        found = self.db.execute("SELECT path, found, cx, cy, r FROM images WHERE row=?", (int(row),)).fetchone()
        if found is None:
            raise CatalogueError(f"{self.root}: no image row {row}")
        return found[0], bool(found[1]), tuple(found[2:])

    def entry_rows(self, entry_id: str) -> list[tuple[int, str | None]]:
        return list(self.db.execute("SELECT row, side FROM images WHERE entry_id=? ORDER BY row", (entry_id,)))

    def max_faces(self) -> int:
        """The most images that one entry has (1 in an empty catalogue)."""
        row = self.db.execute("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM images GROUP BY entry_id)").fetchone()
        return int(row[0] or 1)

    def entries_where(self, column: str, value: str) -> list[str]:
        """The ids of the entries whose metadata column ``column`` holds ``value``."""
        return [r[0] for r in self.db.execute("SELECT id FROM entries WHERE json_extract(metadata, ?) = ?",
                                              (f'$."{column}"', value))]

    def row_entries(self) -> dict[int, str]:
        """The entry id of every image row."""
        return dict(self.db.execute("SELECT row, entry_id FROM images ORDER BY row"))

    def rows(self) -> list[int]:
        """Every image row, in order (rows of removed entries are gone, so they need not run 0, 1, 2...)."""
        return [r[0] for r in self.db.execute("SELECT row FROM images ORDER BY row")]

    def features(self, row: int) -> tuple[str, bytes, bytes] | None:
        return self.db.execute("SELECT method, keypoints, descriptors FROM features WHERE row=?", (int(row),)).fetchone()

    def _rows_in(self, table: str) -> int:
        """Rows of an optional table (0 where a catalogue made before it existed has none)."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone():
            return 0
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def angle_count(self) -> int:
        """Images with angle vectors stored (0 in a catalogue made before they were, or by a one-angle model)."""
        return self._rows_in("angles")

    def has_angles(self) -> bool:
        """Whether every image has its angle vectors, so that search can compare coins angle by angle."""
        return len(self) > 0 and self.angle_count() == len(self)

    def angle_vectors(self, rows: Iterable[int]) -> np.ndarray:
        """len(rows) x angles x dim float32, in the order asked."""
        rows = [int(r) for r in rows]
        dim = int(self.meta("dim"))
        found = self._stored_float16("angles", "vectors", rows, "angle vectors", 2 * dim, f"{dim}-d float16 vectors")
        found = {r: v.reshape(-1, dim) for r, v in found.items()}
        self._same_length(found, rows, "angle vectors")
        return np.stack([found[r] for r in rows]).astype(np.float32) if rows else np.zeros((0, 1, dim), np.float32)

    def _stored_float16(self, table: str, column: str, rows: list[int], what: str, unit: int,
                        units: str) -> dict[int, np.ndarray]:
        """Each row's float16 blob of ``table``, checked whole (a multiple of ``unit`` bytes) and present for every
        row; ``what`` and ``units`` name them in the error."""
        found = {}
        for row, blob in self._where_in(f"SELECT row, {column} FROM {table} WHERE row IN", rows):
            if not isinstance(blob, bytes) or not blob or len(blob) % unit:
                raise CatalogueError(f"{self.root}: the {what} of image row {row} are damaged "
                                     f"({len(blob) if isinstance(blob, bytes) else 0} bytes, not a whole number "
                                     f"of {units}); rebuild the catalogue")
            found[row] = np.frombuffer(blob, np.float16)
        missing = [r for r in rows if r not in found]
        if missing:
            raise CatalogueError(f"{self.root}: image row {missing[0]} has no {what}; rebuild the catalogue")
        return found

    def _same_length(self, found: dict[int, np.ndarray], rows: list[int], what: str) -> None:
        """Refuse rows that hold more or fewer of ``what`` than the first."""
        odd = [r for r in rows if len(found[r]) != len(found[rows[0]])]
        if odd:
            raise CatalogueError(f"{self.root}: image row {rows[0]} holds {len(found[rows[0]])} {what} and row "
                                 f"{odd[0]} {len(found[odd[0]])}: the catalogue is inconsistent; rebuild it")

    def info(self) -> dict:
        sides = dict(self.db.execute("SELECT COALESCE(side, 'single'), COUNT(*) FROM images GROUP BY 1"))
        calibration = json.loads(self.meta("calibration", "null") or "null")
        return {
            "path": str(self.root),
            "entries": self.n_entries(),
            "images": len(self),
            "faces": sides,
            "dim": int(self.meta("dim")),
            "index": vindex.kind_of(self.index),
            "index_setting": self.meta("index_kind"),
            "model": self.meta("model_name", "") or self.meta("model_source"),
            "model_fingerprint": self.fingerprint,
            "model_source": self.meta("model_source"),
            "model_config": json.loads(self.meta("model_config")),
            "threshold": calibration["threshold"] if calibration else None,
            "calibration": calibration,
            "verification_features": self.db.execute("SELECT COUNT(*) FROM features").fetchone()[0],
            "angle_vectors": self.angle_count(),
            "created": self.meta("created"),
            "updated": self.meta("updated"),
        }

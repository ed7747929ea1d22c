"""Manifests: CSV files naming images and their metadata.

Three shapes are read:

* one image per row: an ``image`` column (a path relative to the CSV's folder), an optional ``id``;
* both faces per row: ``obverse`` and/or ``reverse`` columns instead of ``image``;
* one face per row: ``image`` plus ``side`` (obverse/reverse) rows that share an id column.

Every other column is metadata and is kept as text. Errors name the file and the line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from coinmatch import CoinmatchError

SIDES = {"obv": "obverse", "obverse": "obverse", "o": "obverse", "front": "obverse", "heads": "obverse",
         "rev": "reverse", "reverse": "reverse", "r": "reverse", "back": "reverse", "tails": "reverse"}
RESERVED = {"image", "id", "obverse", "reverse", "side"}


class ManifestError(CoinmatchError):
    """A manifest cannot be read; the message names the file (and line) and the cause."""


@dataclass
class Face:
    side: str | None  # "obverse", "reverse" or None (unknown / single face)
    path: Path  # absolute
    relpath: str  # as written in the manifest


@dataclass
class Entry:
    id: str
    faces: list[Face]
    metadata: dict[str, str] = field(default_factory=dict)


def normalise_side(value: str | None, where: str) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return SIDES[value.strip().lower()]
    except KeyError:
        raise ManifestError(f"{where}: side {value!r} is neither obverse nor reverse") from None


def require_column(path: str | Path, column: str, option: str) -> None:
    """Refuse a manifest (read already by ``read_manifest``) that lacks ``column``, naming the ones it has and the
    command-line ``option`` that named it."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        columns = [c.strip() for c in next(csv.reader(f), [])]
    if column not in columns:
        raise ManifestError(f"{path}: no {column!r} column for {option}; the columns are {', '.join(columns)}")


def read_manifest(path: str | Path, id_column: str | None = None, check_files: bool = True,
                  per_row: bool = False) -> list[Entry]:
    """Read a manifest into entries (one per physical coin; rows that share an id are its faces). ``per_row``:
    one entry per row, whatever its id (a query manifest, where several photos may show one coin). Errors name
    the line a row starts on in the file, blank lines and quoted line breaks counted."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not a UTF-8 text file (is it a CSV?)") from exc
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read ({exc.strerror})") from exc
    if "\x00" in text:
        raise ManifestError(f"{path}: not a CSV file (binary data)")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        columns = [c.strip() for c in next(reader, [])]
    except csv.Error as exc:
        raise ManifestError(f"{path}: malformed CSV header ({exc})") from exc
    if not any(columns):
        raise ManifestError(f"{path}: empty manifest (no header line)")
    image_cols = [c for c in ("obverse", "reverse") if c in columns]
    if "image" not in columns and not image_cols:
        raise ManifestError(f"{path}: no 'image' column (nor 'obverse'/'reverse'); the columns are {', '.join(columns)}")
    id_col = id_column or ("id" if "id" in columns else None)
    if id_column and id_column not in columns:
        raise ManifestError(f"{path}: no {id_column!r} column; the columns are {', '.join(columns)}")
    if "side" in columns and "image" in columns and not id_col:
        id_col = "coin_id" if "coin_id" in columns else None
    base = path.parent.resolve()
    entries: dict[str, Entry] = {}
    lineno = reader.line_num + 1  # the line the next row starts on
    try:
        for fields in reader:
            where = f"{path}, line {lineno}"
            lineno = reader.line_num + 1
            if not any(f.strip() for f in fields):
                continue  # a blank line, or a row of empty fields
            if len(fields) > len(columns):
                raise ManifestError(f"{where}: more fields than the header has columns")
            if len(fields) < len(columns):
                raise ManifestError(f"{where}: fewer fields than the header has columns")
            row = {k: v.strip() for k, v in zip(columns, fields)}
            faces = []
            if "image" in columns and row["image"]:
                faces.append((normalise_side(row.get("side"), where), row["image"]))
            for col in image_cols:
                if row[col]:
                    faces.append((col, row[col]))
            if not faces:
                raise ManifestError(f"{where}: no image path")
            first_rel = faces[0][1]
            entry_id = row[id_col] if id_col and row.get(id_col) else Path(first_rel).with_suffix("").as_posix()
            key = where if per_row else entry_id
            metadata = {k: v for k, v in row.items() if k not in RESERVED and k != id_col}
            resolved = []
            for side, rel in faces:
                p = (base / rel).resolve()
                if check_files and not p.is_file():
                    raise ManifestError(f"{where}: image {rel!r} not found ({p})")
                resolved.append(Face(side, p, rel))
            if key in entries:
                entry = entries[key]
                sides = {f.side for f in entry.faces}
                if any(f.side is None or f.side in sides for f in resolved):
                    raise ManifestError(f"{where}: id {entry_id!r} appears twice (rows sharing an id need a "
                                        f"'side' column with one obverse and one reverse)")
                entry.faces.extend(resolved)
                for k, v in metadata.items():
                    entry.metadata.setdefault(k, v)
            else:
                entries[key] = Entry(entry_id, resolved, metadata)
    except csv.Error as exc:
        raise ManifestError(f"{path}, line {lineno}: malformed CSV ({exc})") from exc
    if not entries:
        raise ManifestError(f"{path}: no rows")
    return list(entries.values())

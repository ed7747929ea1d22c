"""A whole collection matched: photos -> coins (faces paired by file name or a manifest) -> each coin searched in
every catalogue -> one row per coin with its best match, decision, warnings and provenance chain.

A coin's **provenance chain** is every catalogue entry judged to be that very coin, in every catalogue searched
(several catalogues, or several sales of one), ordered by the sale date of its record (a ``date`` column) and
undated last. An entry is judged the coin by the catalogue's calibrated threshold where it has one (the verified
threshold for a verified search), and otherwise, with verification, by ``DEFAULT_VERIFIED_THRESHOLD``.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING


from coinmatch import CoinmatchError
from coinmatch.catalog.manifest import SIDES

if TYPE_CHECKING:
    from coinmatch.api import Catalogue
    from coinmatch.prepare import PreparedCoin
    from coinmatch.search import Match, QueryResult

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
# "coin12_obv.jpg" and "coin12_rev.jpg" are one coin; "_a"/"_b" and other endings are separate coins
FACE_NAME = re.compile(r"^(?P<stem>.+?)[ _.\-]+(?P<side>obv|obverse|rev|reverse|front|back|heads|tails)$", re.I)
FACE_WORDS = {word: side for word, side in SIDES.items() if len(word) > 1}  # a manifest's words less "o" and "r"
# The verified score (the embedding's score plus the inliers, at most 40, over 40) that makes an entry the coin
# where a catalogue is not calibrated. Inliers alone do not separate: coins struck from one die share their design,
# and on the real euro pairs the best wrong candidate kept 30 or more inliers for 14 of 84 photos (up to 105); at a
# verified score of 1.2, 0.976 of the true entries (0.940 of catalogue-like queries) and one wrong entry in each
# form pass, the default model's figures (benchmarks/web.py). Calibrating a catalogue replaces it.
DEFAULT_VERIFIED_THRESHOLD = 1.2
ZIP_MAX_FILES = 5000
ZIP_MAX_BYTES = 2 * 1024**3  # uncompressed, in all
DATE_COLUMNS = ("date", "sale_date", "sale date", "auction_date")
DATE_FORMATS = ("%Y-%m-%d", "%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y", "%d.%m.%Y",
                "%d/%m/%Y", "%Y/%m/%d", "%B %Y", "%b %Y", "%Y-%m")


@dataclass
class Photo:
    name: str  # how the user knows it (a file name, a path, a zip member): a label, never opened as a path
    data: bytes | Path


@dataclass
class CollectionCoin:
    name: str
    faces: dict[str | None, Photo]  # None (one photo), or "obverse" and/or "reverse"
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Appearance:
    """One catalogue entry in a coin's provenance chain."""

    catalogue: str
    match: "Match"
    date: str  # as the record gives it ("" when undated)


@dataclass
class CoinResult:
    coin: CollectionCoin
    results: dict[str, "QueryResult"]  # catalogue name -> its answer
    faces: dict[str | None, "PreparedCoin"] = field(default_factory=dict)  # each face's coin, its crop 256 px
    chain: list[Appearance] = field(default_factory=list)
    error: str | None = None  # why the coin could not be searched (an unreadable photo)

    @property
    def best(self) -> tuple[str, "Match"] | None:
        """The best match over every catalogue: (catalogue, match), by verified score where verified."""
        ranked = [(name, r.matches[0]) for name, r in self.results.items() if r.matches]
        if not ranked:
            return None
        return max(ranked, key=lambda t: t[1].verified_score if t[1].verified_score is not None else t[1].score)

    @property
    def decision(self) -> str | None:
        """match / no_match from the best match's catalogue once calibrated; with verification and no calibration,
        match where the chain holds an entry (by DEFAULT_VERIFIED_THRESHOLD), else None."""
        best = self.best
        if best is None:
            return None if self.error else "no_match"
        decided = self.results[best[0]].decision
        if decided is None and best[1].inliers is not None:
            return "match" if self.chain else "no_match"
        return decided

    @property
    def warnings(self) -> list[str]:
        seen = []
        for r in self.results.values():
            seen += [w for w in r.warnings if w not in seen]
        return seen


def sale_date(text: str) -> tuple[int, int, int] | None:
    """A record's date as (year, month, day) to sort by: ISO, "12 May 1987", "May 12, 1987", "12.05.1987" (day
    first), "May 1987", "1987"; None where none can be read."""
    text = " ".join(str(text or "").replace(",", ", ").split()).replace(" ,", ",")
    if not text:
        return None
    for fmt in DATE_FORMATS:
        try:
            d = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return d.year, d.month if "%m" in fmt or "%b" in fmt or "%B" in fmt else 0, d.day if "%d" in fmt else 0
    year = re.fullmatch(r"(?:c\.\s*)?(\d{4})", text)
    return (int(year.group(1)), 0, 0) if year else None


def record_date(metadata: dict) -> str:
    for key, value in metadata.items():
        if key.strip().lower() in DATE_COLUMNS and str(value).strip():
            return str(value).strip()
    return ""


def pair_faces(photos: Iterable[Photo]) -> list[CollectionCoin]:
    """Photos -> coins: "NAME_obv.jpg" and "NAME_rev.jpg" (also obverse/reverse, front/back, heads/tails, with
    "_", "-", "." or " ") are one coin NAME; every other photo is a coin of its own."""
    coins: dict[str, CollectionCoin] = {}
    for photo in photos:
        stem = Path(photo.name).with_suffix("").as_posix()
        m = FACE_NAME.match(stem)
        name, side = (m.group("stem"), FACE_WORDS[m.group("side").lower()]) if m else (stem, None)
        coin = coins.get(name)
        if coin is not None and side is not None and side not in coin.faces and None not in coin.faces:
            coin.faces[side] = photo
            continue
        key, n = name, 2
        while key in coins:  # a second photo of one name is a coin of its own
            key, n = f"{name} ({n})", n + 1
        coins[key] = CollectionCoin(key, {side: photo})
    return list(coins.values())


def image_files(folder: Path, suffixes: set[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The files of a folder and its sub-folders with these suffixes, hidden ones left out, sorted; none is an
    error naming the folder."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise CoinmatchError(f"{folder}: no files of these kinds in the folder: {', '.join(sorted(suffixes))}")
    return files


def read_zip(data: bytes, label: str = "<zip>") -> list[Photo]:
    """The image files of a zip archive, read in memory (member names are labels only, never paths), within
    ZIP_MAX_FILES files and ZIP_MAX_BYTES uncompressed."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CoinmatchError(f"{label}: not a readable zip archive ({exc})") from exc
    members = [i for i in archive.infolist() if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES
               and not any(part.startswith((".", "__MACOSX")) and part not in ("..", ".")
                           for part in Path(i.filename).parts)]  # hidden files and macOS resource forks
    if len(members) > ZIP_MAX_FILES:
        raise CoinmatchError(f"{label}: {len(members)} images; at most {ZIP_MAX_FILES} are taken at once")
    if sum(i.file_size for i in members) > ZIP_MAX_BYTES:
        raise CoinmatchError(f"{label}: more than {ZIP_MAX_BYTES // 1024**3} GB uncompressed; split it")
    photos, total = [], 0
    for info in members:
        try:
            with archive.open(info) as f:
                content = f.read(info.file_size + 1)  # a header that understates the size is caught here
        except (zipfile.BadZipFile, OSError, ValueError, RuntimeError) as exc:  # RuntimeError: encrypted
            raise CoinmatchError(f"{label}: member {info.filename!r} cannot be read ({exc})") from exc
        total += len(content)
        if len(content) > info.file_size or total > ZIP_MAX_BYTES:
            raise CoinmatchError(f"{label}: member {info.filename!r} is larger than the archive says")
        photos.append(Photo(info.filename, content))
    if not photos:
        raise CoinmatchError(f"{label}: no image files in the archive ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return photos


def read_collection(source: str | Path | Iterable[Photo]) -> list[CollectionCoin]:
    """A collection as coins: a folder of photos (searched through its sub-folders), a zip of photos, one photo,
    a manifest (CSV: ``image``, or ``obverse``/``reverse``; its other columns kept), or :class:`Photo` objects."""
    from coinmatch.catalog.manifest import read_manifest

    if not isinstance(source, (str, Path)):
        return pair_faces(source)
    path = Path(source)
    if not path.exists():
        raise CoinmatchError(f"{path}: not found")
    if path.is_dir():
        return pair_faces(Photo(p.relative_to(path).as_posix(), p) for p in image_files(path))
    if path.suffix.lower() == ".zip":
        return pair_faces(read_zip(path.read_bytes(), str(path)))
    if path.suffix.lower() == ".csv":
        return [CollectionCoin(e.id, {f.side: Photo(f.relpath, f.path) for f in e.faces}, e.metadata)
                for e in read_manifest(path, per_row=True)]
    return pair_faces([Photo(path.name, path)])


def judged_same(result: "QueryResult", match: "Match", calibration: dict) -> bool | None:
    """Whether a match is the query's coin: by the calibrated threshold of the way it was scored, else (verified)
    at DEFAULT_VERIFIED_THRESHOLD; None where neither can say."""
    verified = match.verified_score is not None
    threshold = calibration.get("verified_threshold" if verified else "embedding_threshold") if calibration else None
    if threshold is not None and result.decision is not None:
        return (match.verified_score if verified else match.score) >= threshold
    if verified:
        return match.verified_score >= DEFAULT_VERIFIED_THRESHOLD
    return None


def search_faces(cat: "Catalogue", faces: dict[str | None, "PreparedCoin"], top_k: int = 5, verify: bool = True,
                 candidates: int = 20) -> "QueryResult":
    """One coin by its faces: one photo (side None), or its obverse and/or reverse."""
    if None in faces:
        return cat.search(faces[None], top_k=top_k, verify=verify, candidates=candidates)
    return cat.search_coin(faces.get("obverse"), faces.get("reverse"), top_k=top_k, verify=verify,
                           candidates=candidates)


def match_coin(catalogues: dict[str, "Catalogue"], coin: CollectionCoin, top_k: int = 5, verify: bool = True,
               candidates: int = 20) -> CoinResult:
    """One coin searched in every catalogue, its chain assembled; an unreadable photo is this coin's error."""
    from coinmatch.images import square_resized
    from coinmatch.prepare import PreparedCoin, prepare_any

    try:
        faces = {side: prepare_any(p.data, name=p.name) for side, p in coin.faces.items()}
    except CoinmatchError as exc:
        return CoinResult(coin, {}, error=str(exc))
    # kept at verification's size: evidence drawn later from them gives the inliers the search gave
    out = CoinResult(coin, {}, {side: PreparedCoin(square_resized(p.crop, 256), p.location, p.source) for side, p in faces.items()})
    for name, cat in catalogues.items():
        result = search_faces(cat, faces, top_k, verify, candidates)
        out.results[name] = result
        calibration = cat.searcher.calibration if cat.searcher.calibration_applies else {}
        out.chain += [Appearance(name, m, record_date(m.metadata)) for m in result.matches
                      if judged_same(result, m, calibration)]
    out.chain.sort(key=lambda a: (sale_date(a.date) is None, sale_date(a.date) or (0, 0, 0), a.catalogue,
                                  -(a.match.verified_score or a.match.score)))
    return out


def match_collection(catalogues: dict[str, "Catalogue"], coins: list[CollectionCoin], top_k: int = 5,
                     verify: bool = True, candidates: int = 20,
                     on_progress: Callable[[int, int], None] | None = None) -> list[CoinResult]:
    """Every coin of a collection searched in every catalogue (see :func:`match_coin`), in order;
    ``on_progress(done, total)`` after each."""
    out = []
    for i, coin in enumerate(coins, 1):
        out.append(match_coin(catalogues, coin, top_k, verify, candidates))
        if on_progress:
            on_progress(i, len(coins))
    return out


def searched_at() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")

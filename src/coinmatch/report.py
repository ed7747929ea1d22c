"""A collection's results as a provenance report: a CSV (one row per coin) and a printable HTML page (per coin: the
photo, the matched catalogue image, its record, the score and inliers, the decision, its provenance chain; the date
of the search and each catalogue's model fingerprint). The page is one self-contained file: images inline."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from coinmatch import __version__
from coinmatch.collection import DEFAULT_VERIFIED_THRESHOLD, CoinResult, searched_at
from coinmatch.files import replaced
from coinmatch.images import square_resized

if TYPE_CHECKING:
    from coinmatch.api import Catalogue

CSV_COLUMNS = ["coin", "photos", "catalogue", "match", "score", "inliers", "verified_score", "decision", "warnings",
               "chain", "error"]
TEMPLATES = Environment(loader=PackageLoader("coinmatch", "templates"), autoescape=select_autoescape(["html"]))


def jpeg_data_uri(rgb: np.ndarray, side: int | None = 256) -> str:
    """An RGB image as an inline JPEG (data: URI), ``side`` px square (None: as it is)."""
    small = rgb if side is None else square_resized(rgb, side)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _number(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def csv_rows(results: list[CoinResult]) -> tuple[list[str], list[dict]]:
    """The CSV's columns (the fixed ones, then every record column of the best matches) and one row per coin."""
    extra: list[str] = []
    rows = []
    for r in results:
        best = r.best
        row = {"coin": r.coin.name, "photos": " + ".join(p.name for p in r.coin.faces.values()),
               "decision": r.decision or "", "warnings": "; ".join(r.warnings), "error": r.error or "",
               "chain": " > ".join(f"{a.catalogue}:{a.match.id}" + (f" ({a.date})" if a.date else "") for a in r.chain)}
        if best is not None:
            name, m = best
            row.update(catalogue=name, match=m.id, score=_number(m.score), inliers="" if m.inliers is None else m.inliers,
                       verified_score=_number(m.verified_score))
            with_record(row, m.metadata, CSV_COLUMNS, extra)
        rows.append(row)
    return CSV_COLUMNS + extra, rows


def with_record(row: dict, metadata: dict, columns: list[str], extra: list[str]) -> dict:
    """``row`` with a catalogue record's columns after the fixed ``columns`` (a column the row has keeps its value);
    a column not seen before is added to ``extra``."""
    for k, v in metadata.items():
        if k not in columns and k not in extra:
            extra.append(k)
        row.setdefault(k, v)
    return row


def csv_text(columns: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def report_csv(results: list[CoinResult]) -> str:
    return csv_text(*csv_rows(results))


def report_html(results: list[CoinResult], catalogues: dict[str, "Catalogue"], settings: dict,
                searched: str | None = None, title: str = "Provenance report") -> str:
    """The printable page. ``settings``: how the search was made (shown as given: verify, top_k...)."""
    about = {}
    for name, cat in catalogues.items():
        info = cat.info()
        about[name] = {"path": str(cat.path), "entries": info["entries"], "model": info["model"],
                       "fingerprint": info["model_fingerprint"], "calibrated": info["calibration"] is not None}
    crops: dict[tuple[str, int], str] = {}

    def image_of(catalogue: str, row: int) -> str:
        if (catalogue, row) not in crops:
            crops[catalogue, row] = jpeg_data_uri(catalogues[catalogue].crop(row), 200)
        return crops[catalogue, row]

    coins = []
    for r in results:
        best = r.best
        coins.append({"result": r, "photos": {side: jpeg_data_uri(p.crop, 200) for side, p in r.faces.items()},
                      "best": best, "best_image": image_of(*best[:1], best[1].row) if best else None,
                      "chain": [(a, image_of(a.catalogue, a.match.row)) for a in r.chain]})
    template = TEMPLATES.get_template("report.html")
    return template.render(title=title, coins=coins, catalogues=about, settings=settings,
                           searched=searched or searched_at(), version=__version__,
                           default_threshold=DEFAULT_VERIFIED_THRESHOLD,
                           matched=sum(1 for r in results if r.decision == "match"))


def write_report(results: list[CoinResult], catalogues: dict[str, "Catalogue"], out: str | Path, settings: dict,
                 searched: str | None = None) -> dict[str, Path]:
    """``OUT/report.csv`` and ``OUT/report.html``, each written whole or not at all; returns their paths."""
    out = Path(out)
    paths = {"csv": out / "report.csv", "html": out / "report.html"}
    with replaced(paths["csv"]) as tmp:
        tmp.write_text(report_csv(results), encoding="utf-8")
    with replaced(paths["html"]) as tmp:
        tmp.write_text(report_html(results, catalogues, settings, searched), encoding="utf-8")
    return paths

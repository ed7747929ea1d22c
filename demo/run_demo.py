"""The demo: catalogue the bundled real coin photos, identify each query photo, say how often the top answer is right.

Run by `make demo`, through the public Python API (the one the CLI uses). Each query is searched twice: by the
embedding alone (search's own ranking, no verification), then verified by local features.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from coinmatch import Catalogue
from coinmatch.collection import match_collection, read_collection
from coinmatch.report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def main(out_dir: str = "out/demo") -> int:
    console = Console(width=160)
    path = Path(out_dir) / "catalogue"
    console.rule("coinmatch demo: which catalogued coin is in each photo?")
    t0 = time.perf_counter()
    with Catalogue.build(path, DATA / "catalogue.csv") as cat:
        console.print(f"catalogue: {len(cat)} coins from {DATA / 'catalogue.csv'} in {time.perf_counter() - t0:.1f} s "
                      f"-> {path}\nmodel: {cat.info()['model']}")
        with open(DATA / "queries.csv", encoding="utf-8") as f:
            queries = list(csv.DictReader(f))
        table = Table(title="query photo -> the catalogue's answer, by the embedding alone and verified")
        for col in ("query", "true coin", "embedding: top", "score", "verified: top", "inliers", "right?",
                    "runner-up (inliers)", "warnings"):
            table.add_column(col)
        hits_embed = hits_verified = 0
        t0 = time.perf_counter()
        for q in queries:
            plain = cat.search(DATA / q["image"], top_k=1)
            checked = cat.search(DATA / q["image"], top_k=3, verify=True)
            top, runner = checked.matches[0], checked.matches[1] if len(checked.matches) > 1 else None
            hits_embed += plain.matches[0].id == q["coin_id"]
            hits_verified += top.id == q["coin_id"]
            table.add_row(Path(q["image"]).name, q["coin_id"], plain.matches[0].id, f"{plain.matches[0].score:.3f}",
                          top.id, str(top.inliers), "[green]yes[/]" if top.id == q["coin_id"] else "[red]no[/]",
                          f"{runner.id} ({runner.inliers})" if runner else "", "; ".join(checked.warnings)[:50])
        elapsed = time.perf_counter() - t0
        # the same photos as a collection, as a curator would match a box of coins: a provenance report
        t1 = time.perf_counter()
        results = match_collection({"demo": cat}, read_collection(DATA / "queries"))
        report = write_report(results, {"demo": cat}, Path(out_dir) / "report", {"verify": True, "top_k": 5})
        report_seconds = time.perf_counter() - t1
    console.print(table)
    n = len(queries)
    console.print(f"recall@1, embedding alone:      {hits_embed}/{n} = {hits_embed / n:.3f}")
    console.print(f"recall@1, with verification:    {hits_verified}/{n} = {hits_verified / n:.3f}")
    console.print(f"{1000 * elapsed / n:.0f} ms per query photo for both searches (find the coin, embed, search; "
                  f"then verify the top 20)")
    console.print("score: the embedding's (the mean of the cosine and the cosine with the coins turned to their best "
                  "angle, less half the entry's local density); inliers: local features that agree under one turn and "
                  "scale of the coin")
    matched = sum(r.decision == "match" for r in results)
    console.print(f"the {len(results)} query photos matched as one collection in {report_seconds:.0f} s: {matched} "
                  f"matched (a verified score of 1.2 or more: the catalogue is not calibrated); provenance report "
                  f"{report['html']} and {report['csv']}")
    console.print(f"Try: .venv/bin/coinmatch search {path} {DATA / queries[0]['image']} --verify")
    console.print(f"     .venv/bin/coinmatch serve {path}     (the web app, at http://127.0.0.1:8000/)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

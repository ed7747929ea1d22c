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
    console.print(table)
    n = len(queries)
    console.print(f"recall@1, embedding alone:      {hits_embed}/{n} = {hits_embed / n:.3f}")
    console.print(f"recall@1, with verification:    {hits_verified}/{n} = {hits_verified / n:.3f}")
    console.print(f"{1000 * elapsed / n:.0f} ms per query photo for both searches (find the coin, embed, search; "
                  f"then verify the top 20)")
    console.print("score: the embedding's (the mean of the cosine and the cosine with the coins turned to their best "
                  "angle, less half the entry's local density); inliers: local features that agree under one turn and "
                  "scale of the coin")
    console.print(f"Try: .venv/bin/coinmatch search {path} {DATA / queries[0]['image']} --verify")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

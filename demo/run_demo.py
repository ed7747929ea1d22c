"""The demo: catalogue the bundled real coin photos, identify each query photo, say how often the top answer is right.

Run by `make demo`. Uses only the public API that the CLI uses.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from coinmatch.catalog.build import build_catalogue
from coinmatch.search import Searcher
from coinmatch.verify import extract_features_blob

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def main(out_dir: str = "out/demo") -> int:
    console = Console(width=150)
    catalogue = Path(out_dir) / "catalogue"
    console.rule("coinmatch demo: which catalogued coin is in each photo?")
    t0 = time.perf_counter()
    info = build_catalogue(catalogue, DATA / "catalogue.csv", features=extract_features_blob)
    console.print(f"catalogue: {info['entries']} coins from {DATA / 'catalogue.csv'} in {time.perf_counter() - t0:.1f} s "
                  f"-> {catalogue}")
    queries = list(csv.DictReader(open(DATA / "queries.csv", encoding="utf-8")))
    searcher = Searcher(catalogue)
    table = Table(title="query photo -> best catalogue entries (embedding, then verified by local features)")
    for col in ("query", "true coin", "top match", "cosine", "inliers", "right?", "runner-up", "warnings"):
        table.add_column(col)
    hits_embed = hits_verified = 0
    t0 = time.perf_counter()
    for q in queries:
        [res] = searcher.search([DATA / q["image"]], top_k=3, verify=True)
        plain = sorted(res.results, key=lambda m: -m.score)
        top, runner = res.results[0], res.results[1] if len(res.results) > 1 else None
        ok = top.id == q["coin_id"]
        hits_verified += ok
        hits_embed += plain[0].id == q["coin_id"]
        table.add_row(Path(q["image"]).name, q["coin_id"], top.id, f"{top.score:.3f}", str(top.inliers),
                      "[green]yes[/]" if ok else "[red]no[/]",
                      f"{runner.id} ({runner.inliers})" if runner else "", "; ".join(res.warnings)[:50])
    elapsed = time.perf_counter() - t0
    console.print(table)
    n = len(queries)
    console.print(f"recall@1, embedding alone:      {hits_embed}/{n} = {hits_embed / n:.3f}")
    console.print(f"recall@1, with verification:    {hits_verified}/{n} = {hits_verified / n:.3f}")
    console.print(f"{1000 * elapsed / n:.0f} ms per query photo (load, find coin, embed, search, verify top 20)")
    console.print(f"Try: .venv/bin/coinmatch search {catalogue} {DATA / queries[0]['image']} --verify")
    searcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""`coinmatch link` on real same-coin photos: are the photos of one coin joined, and never two coins?

    .venv/bin/python benchmarks/link.py          # about 5 minutes on 2 cores, the default model

The euro pairs (benchmarks/common.py): one catalogue of the 84 coins' first shots and 871 other coins of the same
two types, linked with a second catalogue of the 84 coins' second shots (1,039 entries). Each coin's two shots
should form one group; no group should hold two coins. Prints the groups found, the pairs joined, wrong joins and
entries per second (and, from it, the hours 100,000 entries would take).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import WORK, pairs_manifests, save_results  # noqa: E402

from coinmatch import Catalogue  # noqa: E402
from coinmatch.catalog.build import build_catalogue  # noqa: E402
from coinmatch.catalog.store import is_catalogue  # noqa: E402
from coinmatch.link import link_catalogues  # noqa: E402


def main() -> None:
    cat_csv, queries_csv = pairs_manifests()
    first = WORK / "catalogue-verifiers-default"
    second = WORK / "link-second-shots"
    if not is_catalogue(first):
        build_catalogue(first, cat_csv, progress=True)
    if not is_catalogue(second):
        rows = list(csv.DictReader(open(queries_csv, encoding="utf-8")))
        manifest = WORK / "link-second-shots.csv"
        with open(manifest, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["image", "id", "coin"])
            w.writerows([r["image"], f"second:{r['coin_id']}", r["coin_id"]] for r in rows)
        build_catalogue(second, manifest, progress=True)
    with Catalogue.open(first) as a, Catalogue.open(second) as b:
        t = time.perf_counter()
        linked = link_catalogues({"first": a, "second": b})
        seconds = time.perf_counter() - t

    def coin(appearance) -> str:
        return appearance.node.entry.removeprefix("second:")

    coins_of_groups = [{coin(x) for x in g} for g in linked.groups]
    mixed = sum(len(c) > 1 for c in coins_of_groups)
    joined = sum(any(x.node.catalogue == "first" for x in g) and any(x.node.catalogue == "second" for x in g)
                 and len({coin(x) for x in g}) == 1 for g in linked.groups)
    row = {"entries": linked.entries, "groups": len(linked.groups), "pairs_joined": joined, "pairs": 84,
           "groups_with_two_coins": mixed, "pairs_scored": linked.pairs_scored, "seconds": seconds,
           "entries_per_s": linked.entries / seconds, "hours_for_100k": 100_000 / (linked.entries / seconds) / 3600,
           "threshold": linked.threshold}
    text = (f"link of {row['entries']} entries (84 coins' first shots + 871 other coins, with the 84 second shots), "
            f"default model, verified-score threshold {row['threshold']}:\n"
            f"  {row['groups']} groups; {joined} of 84 coins' two shots joined; {mixed} groups holding two coins\n"
            f"  {row['pairs_scored']} pairs scored in {seconds:.0f} s: {row['entries_per_s']:.1f} entries/s "
            f"(100,000 entries: about {row['hours_for_100k']:.1f} h at this rate)")
    for g, coins in zip(linked.groups, coins_of_groups):
        if len(coins) > 1:
            text += "\n  two coins in one group: " + ", ".join(f"{x.node.catalogue}:{x.node.entry}" for x in g)
    print(text)
    save_results("link", [row], text)


if __name__ == "__main__":
    main()

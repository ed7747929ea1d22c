"""`coinmatch link` on real same-coin photos: are the photos of one coin joined, and never two coins?

    .venv/bin/python benchmarks/link.py          # about 5 minutes on 2 cores, the default model

The euro pairs (benchmarks/common.py): one catalogue of the 84 coins' first shots and 871 other photos of the same
two types, linked with a second catalogue of the 84 coins' second shots (1,039 entries). Each coin's two shots
should form one group; no group should hold two of the 84 coins. The 871 other photos are not 871 coins: they
come from consecutive shots of the same layouts (train_9, train_10, train_11...), so groups among them are counted
apart, and a sample of them is written out to look at. Prints entries per second too (and, from it, the hours
100,000 entries would take).
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

    def coin(appearance) -> str | None:
        """The known coin of a pair shot; None for one of the other photos (its coin is not known)."""
        entry = appearance.node.entry.removeprefix("second:")
        return None if entry.startswith("d:") else entry

    known = [{coin(x) for x in g} - {None} for g in linked.groups]
    mixed = [g for g, coins in zip(linked.groups, known) if len(coins) > 1]
    joined = sum(len(coins) == 1 and {x.node.catalogue for x in g if coin(x)} == {"first", "second"}
                 for g, coins in zip(linked.groups, known))
    with_other = sum(len(coins) == 1 and any(coin(x) is None for x in g) for g, coins in zip(linked.groups, known))
    others_only = [g for g, coins in zip(linked.groups, known) if not coins]
    row = {"entries": linked.entries, "groups": len(linked.groups), "pairs_joined": joined, "pairs": 84,
           "groups_with_two_known_coins": len(mixed), "groups_pair_coin_with_other_photos": with_other,
           "groups_of_other_photos_only": len(others_only), "pairs_scored": linked.pairs_scored, "seconds": seconds,
           "entries_per_s": linked.entries / seconds, "hours_for_100k": 100_000 / (linked.entries / seconds) / 3600,
           "threshold": linked.threshold}
    text = (f"link of {row['entries']} entries (84 coins' first shots + 871 other photos, with the 84 second shots), "
            f"default model, verified-score threshold {row['threshold']}:\n"
            f"  {row['groups']} groups; {joined} of 84 coins' two shots joined; {len(mixed)} groups holding two of the "
            f"84 coins; {with_other} groups join a pair coin with other photos, {len(others_only)} groups among the "
            f"other photos alone (their coins are not known: consecutive shots of one layout)\n"
            f"  {row['pairs_scored']} pairs scored in {seconds:.0f} s: {row['entries_per_s']:.1f} entries/s "
            f"(100,000 entries: about {row['hours_for_100k']:.1f} h at this rate)")
    for g in mixed:
        text += "\n  two known coins in one group: " + ", ".join(f"{x.node.catalogue}:{x.node.entry}" for x in g)
    for g in others_only[:5]:
        text += "\n  other photos grouped (look at them): " + ", ".join(x.node.entry for x in g)
    print(text)
    save_results("link", [row], text)


if __name__ == "__main__":
    main()

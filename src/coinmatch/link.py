"""The same coin in several sales: every entry of one or more catalogues linked to the others that show that very
coin, grouped into one group per physical coin, each ordered by sale date (its provenance chain).

No all-pairs matrix: each image's ``neighbours`` nearest images in every catalogue come from the faiss index;
only those candidates are scored as search scores a query (aligned, less the candidate's local density; the
higher of the two directions) and verified with the local features both catalogues stored. A pair whose verified
score reaches the threshold is a link: the first catalogue's calibrated verified threshold, else
:data:`coinmatch.collection.DEFAULT_VERIFIED_THRESHOLD`.

Links are joined strongest first. Two groups of more than one entry merge only when at least half of all the
pairs across them are links (the pairs not yet scored are scored then): a group must hold together, so one weak
link between two coins cannot chain their groups into one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from coinmatch import CoinmatchError
from coinmatch import verify as verification
from coinmatch.align import aligned_score, cyclic_similarity
from coinmatch.collection import DEFAULT_VERIFIED_THRESHOLD, record_date, sale_date
from coinmatch.report import with_record
from coinmatch.search import DENSITY_WEIGHT

if TYPE_CHECKING:
    from coinmatch.api import Catalogue

NEIGHBOURS = 10  # nearest images of each image, in each catalogue, that are verified
HOLD_TOGETHER = 0.5  # the share of cross pairs that must be links for two groups to merge
CHUNK = 256  # images whose neighbours are asked of faiss at once


@dataclass(frozen=True)
class Node:
    catalogue: str
    entry: str


@dataclass
class Link:
    score: float  # the embedding's, as search gives it (the higher of the two directions)
    inliers: int
    verified_score: float
    ends: tuple[tuple[str, int], tuple[str, int]]  # the two images compared: (catalogue, image row) each

    def row_of(self, catalogue: str, rows: set[int]) -> int:
        """This link's image of an entry (whose image rows are ``rows``) in ``catalogue``."""
        return next(r for c, r in self.ends if c == catalogue and r in rows)


@dataclass
class Appearance:
    node: Node
    image: str
    metadata: dict
    date: str
    row: int  # the image row of its strongest link
    link: Link | None  # its strongest link within its group


@dataclass
class Linked:
    groups: list[list[Appearance]]  # each a provenance chain: oldest sale first, undated last
    threshold: float
    entries: int
    pairs_scored: int
    seconds: float
    linker: "Linker | None" = field(repr=False, default=None)  # its pairs scored, for the evidence drawn after

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0


class Linker:
    """Scores and verifies pairs of catalogue images, each pair once."""

    def __init__(self, catalogues: dict[str, "Catalogue"], threshold: float | None = None):
        self.searchers = {name: cat.searcher for name, cat in catalogues.items()}
        fingerprints = {s.catalogue.fingerprint for s in self.searchers.values()}
        if len(fingerprints) > 1:
            raise CoinmatchError("the catalogues were built by different models ("
                                 + ", ".join(f"{n}: {s.catalogue.fingerprint}" for n, s in self.searchers.items())
                                 + "): their vectors cannot be compared; rebuild one with the other's model")
        for s in self.searchers.values():
            if len(s.catalogue) and not s.catalogue.info()["verification_features"]:
                raise CoinmatchError(f"{s.catalogue.root}: no local features stored; rebuild it with features to link")
        first = next(iter(self.searchers.values()))
        calibrated = first.calibration.get("verified_threshold") if first.calibration_applies else None
        self.threshold = float(threshold if threshold is not None else calibrated or DEFAULT_VERIFIED_THRESHOLD)
        self.scored: dict[tuple[str, int, str, int], Link] = {}

    def entry_of(self, catalogue: str, row: int) -> str:
        return self.searchers[catalogue].row_entry[row]

    def pair(self, a: tuple[str, int], b: tuple[str, int]) -> Link:
        """Two images scored and verified (once; asked again, the stored answer)."""
        key = (*a, *b) if a <= b else (*b, *a)
        if key in self.scored:
            return self.scored[key]  # its ends in either order: a link is symmetric
        (ca, ra), (cb, rb) = a, b
        sa, sb = self.searchers[ca], self.searchers[cb]
        cosine = float(sa.catalogue.vectors([ra])[0] @ sb.catalogue.vectors([rb])[0])
        score = cosine
        if sa.aligned and sb.aligned:
            aligned = float(cyclic_similarity(sa.catalogue.angle_vectors([ra]), sb.catalogue.angle_vectors([rb]))[0, 0])
            score = aligned_score(cosine, aligned)
        if sa.density and sb.density:  # as a search from either side would score it: the higher
            score -= DENSITY_WEIGHT * min(float(sa.densities([ra])[0]), float(sb.densities([rb])[0]))
        v = verification.match(sa.stored_features(self.entry_of(ca, ra), ra),
                               sb.stored_features(self.entry_of(cb, rb), rb))
        link = Link(score, v.inliers, verification.combined_score(score, v.inliers), (a, b))
        self.scored[key] = link
        return link

    def best_pair(self, a: Node, b: Node) -> Link:
        """Two entries' strongest pair of images (faces of one side, where both sides are known)."""
        rows_a = self.searchers[a.catalogue].catalogue.entry_rows(a.entry)
        rows_b = self.searchers[b.catalogue].catalogue.entry_rows(b.entry)
        pairs = [(ra, rb) for ra, sa in rows_a for rb, sb in rows_b if sa is None or sb is None or sa == sb]
        links = [self.pair((a.catalogue, ra), (b.catalogue, rb)) for ra, rb in pairs or
                 [(ra, rb) for ra, _ in rows_a for rb, _ in rows_b]]
        return max(links, key=lambda lk: lk.verified_score)


def link_catalogues(catalogues: dict[str, "Catalogue"], neighbours: int = NEIGHBOURS, threshold: float | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> Linked:
    """Every entry of ``catalogues`` linked to the entries (in all of them) that show the same coin: see the
    module's docstring. ``on_progress(done, total)``: images searched so far."""
    if neighbours < 1:
        raise CoinmatchError(f"neighbours must be 1 or more, not {neighbours}")
    t0 = time.perf_counter()
    linker = Linker(catalogues, threshold)
    total = sum(len(s.catalogue) for s in linker.searchers.values())
    done = 0
    links: dict[tuple[Node, Node], Link] = {}
    for qname, qs in linker.searchers.items():
        all_rows = qs.catalogue.rows()
        for start in range(0, len(all_rows), CHUNK):
            rows = all_rows[start:start + CHUNK]
            vectors = qs.catalogue.vectors(rows)
            for tname, ts in linker.searchers.items():
                for row, ranked in zip(rows, ts.candidates(vectors, neighbours + 1)):
                    a = Node(qname, qs.row_entry[row])
                    for eid, _, trow in ranked:
                        b = Node(tname, eid)
                        if a == b:
                            continue
                        key = (a, b) if (a.catalogue, a.entry) <= (b.catalogue, b.entry) else (b, a)
                        found = linker.pair((qname, row), (tname, trow))
                        if found.verified_score >= linker.threshold and (
                                key not in links or found.verified_score > links[key].verified_score):
                            links[key] = found
            done += len(rows)
            if on_progress:
                on_progress(done, total)
    groups = _groups(links, linker)
    out = [_chain(members, links, linker) for members in groups]
    out.sort(key=lambda chain: _date_key(chain[0].date))
    return Linked(out, linker.threshold, sum(s.catalogue.n_entries() for s in linker.searchers.values()),
                  len(linker.scored), time.perf_counter() - t0, linker)


def _groups(links: dict[tuple[Node, Node], Link], linker: Linker) -> list[list[Node]]:
    """Links joined strongest first into groups that hold together (see the module's docstring)."""
    group_of: dict[Node, int] = {}
    members: dict[int, list[Node]] = {}
    fresh = itertools.count()
    for (a, b), _ in sorted(links.items(), key=lambda kv: -kv[1].verified_score):
        ga, gb = group_of.get(a), group_of.get(b)
        if ga is not None and ga == gb:
            continue
        left = members[ga] if ga is not None else [a]
        right = members[gb] if gb is not None else [b]
        if len(left) > 1 or len(right) > 1:
            passing = sum(linker.best_pair(x, y).verified_score >= linker.threshold for x in left for y in right)
            if passing < HOLD_TOGETHER * len(left) * len(right):
                continue
        new = next(fresh)
        members[new] = left + right
        for n in members[new]:
            group_of[n] = new
        for g in (ga, gb):
            members.pop(g, None)
    return list(members.values())


def _date_key(date: str) -> tuple:
    parsed = sale_date(date)
    return (parsed is None, parsed or (0, 0, 0))


def _chain(members: list[Node], links: dict[tuple[Node, Node], Link], linker: Linker) -> list[Appearance]:
    out = []
    inside = set(members)
    for node in members:
        mine = [lk for (x, y), lk in links.items() if node in (x, y) and x in inside and y in inside]
        best = max(mine, key=lambda lk: lk.verified_score) if mine else None
        store = linker.searchers[node.catalogue].catalogue
        rows = {r for r, _ in store.entry_rows(node.entry)}
        record = store.images([best.row_of(node.catalogue, rows) if best else min(rows)])[0]
        out.append(Appearance(node, record.relpath, record.metadata, record_date(record.metadata), record.row, best))
    out.sort(key=lambda a: (*_date_key(a.date), a.node.catalogue, a.node.entry))
    return out


def chains_rows(linked: Linked) -> tuple[list[str], list[dict]]:
    """The CSV: ``group, catalogue, id, image, date, score, inliers`` (of each appearance's strongest link in its
    group) and then the records' own columns."""
    columns = ["group", "catalogue", "id", "image", "date", "score", "inliers"]
    extra: list[str] = []
    rows = []
    for g, chain in enumerate(linked.groups, 1):
        for a in chain:
            row = {"group": g, "catalogue": a.node.catalogue, "id": a.node.entry, "image": a.image, "date": a.date,
                   "score": "" if a.link is None else f"{a.link.score:.3f}",
                   "inliers": "" if a.link is None else a.link.inliers}
            rows.append(with_record(row, a.metadata, columns, extra))
    return columns + extra, rows


def chains_json(linked: Linked) -> dict:
    return {"threshold": linked.threshold, "entries": linked.entries, "pairs_scored": linked.pairs_scored,
            "seconds": round(linked.seconds, 2), "entries_per_s": round(linked.entries_per_s, 2),
            "groups": [[{"catalogue": a.node.catalogue, "id": a.node.entry, "image": a.image, "date": a.date,
                         "metadata": a.metadata,
                         **({} if a.link is None else {"score": round(a.link.score, 6), "inliers": a.link.inliers,
                                                       "verified_score": round(a.link.verified_score, 6)})}
                        for a in chain] for chain in linked.groups]}


def neighbour_evidence(linked: Linked, catalogues: dict[str, "Catalogue"]) -> list[list[tuple[int, np.ndarray]]]:
    """For each chain, between each appearance and the next: the inliers and the drawn matches (RGB) of their
    strongest pair of images (the pairs the linking scored are not scored again)."""
    from coinmatch.compare import draw_matches

    linker = linked.linker or Linker(catalogues, linked.threshold)
    out = []
    for chain in linked.groups:
        drawn = []
        for a, b in zip(chain, chain[1:]):
            best = linker.best_pair(a.node, b.node)
            ra = best.row_of(a.node.catalogue, {r for r, _ in linker.searchers[a.node.catalogue].catalogue.entry_rows(
                a.node.entry)})
            rb = next(r for c, r in best.ends if (c, r) != (a.node.catalogue, ra))
            fa = linker.searchers[a.node.catalogue].stored_features(a.node.entry, ra)
            fb = linker.searchers[b.node.catalogue].stored_features(b.node.entry, rb)
            v = verification.match(fa, fb, keep_pairs=True)
            drawn.append((v.inliers, draw_matches(catalogues[a.node.catalogue].crop(ra),
                                                  catalogues[b.node.catalogue].crop(rb), v, side=200)))
        out.append(drawn)
    return out


def write_chains(linked: Linked, catalogues: dict[str, "Catalogue"], csv_path=None, html_path=None,
                 json_path=None) -> None:
    """The chains as CSV, a page of thumbnails with the evidence between neighbours, and JSON; each file written
    whole or not at all."""
    import json

    from coinmatch import __version__
    from coinmatch.collection import searched_at
    from coinmatch.files import replaced
    from coinmatch.report import TEMPLATES, csv_text, jpeg_data_uri

    if csv_path:
        with replaced(csv_path) as tmp:
            tmp.write_text(csv_text(*chains_rows(linked)), encoding="utf-8", newline="")
    if json_path:
        with replaced(json_path) as tmp:
            tmp.write_text(json.dumps(chains_json(linked), ensure_ascii=False, indent=1), encoding="utf-8")
    if html_path:
        evidence = neighbour_evidence(linked, catalogues)
        groups = [[(a, jpeg_data_uri(catalogues[a.node.catalogue].crop(a.row), 150),
                    (evidence[g][i][0], jpeg_data_uri(evidence[g][i][1], None))
                    if i < len(chain) - 1 else None) for i, a in enumerate(chain)]
                  for g, chain in enumerate(linked.groups)]
        page = TEMPLATES.get_template("chains.html").render(groups=groups, linked=linked, catalogues=list(catalogues),
                                                       made=searched_at(), version=__version__)
        with replaced(html_path) as tmp:
            tmp.write_text(page, encoding="utf-8")


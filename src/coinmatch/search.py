"""Query -> candidates -> (aligned) -> (verified) ranked results, with a decision when the catalogue is calibrated.

Three stages, each over the previous one's shortlist:

1. the pooled vector's cosine, through the catalogue's faiss index;
2. the top ``candidates`` are scored again: with a model of several angles and a catalogue that stores their
   vectors, by the mean of that cosine and the *aligned* cosine (:mod:`coinmatch.align`); and, with
   ``density`` (the default), less half each candidate's *local density*, the mean score of its ``DENSITY_K``
   nearest other catalogue entries (by vector and angle vectors);
3. with ``verify``, local-feature geometry (:mod:`coinmatch.verify`).

Local density is hubness reduction, CSLS's catalogue side (Conneau et al. 2018, with its k = 10 and its weight
of one half). Some catalogue photos lie close to many others: a common design among worn coins, a bland or
washed-out photo. They come near the top for many queries. Taking half of that closeness off ranks an entry by
how much nearer the query is to it than its own neighbours are. On the real euro pairs with the recipe model
(benchmarks/retrieval.py; other k and weights: docs/research.md) it ranks one more catalogue-like query
first, and it separates catalogued coins from the rest far better (TPR at 1 % FPR 0.50 -> 0.68). It depends
only on the catalogue, so each entry's is computed once per searcher (a faiss query and the scores of its
neighbours) and kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coinmatch import verify as verification
from coinmatch.align import aligned_score, cyclic_similarity
from coinmatch.catalog.store import Catalogue, CatalogueError
from coinmatch.models.runtime import Embedder
from coinmatch.prepare import PreparedCoin, prepare_photo
from coinmatch.quality import quality_warnings
from coinmatch.segment import FINDER_VERSION

DENSITY_K = 10  # neighbours whose mean score is an entry's local density
DENSITY_WEIGHT = 0.5  # the share of it taken off the entry's score


@dataclass
class Match:
    id: str
    score: float  # the embedding's, best first: the cosine (best face), or with angle vectors (cosine + aligned) / 2;
    # less DENSITY_WEIGHT times ``density`` when the searcher takes density off
    image: str  # the catalogue image that matched, as written in its manifest
    metadata: dict
    row: int = field(repr=False, default=-1)
    side: str | None = None
    thumb: str | None = None
    inliers: int | None = None  # verification evidence, when verified
    verified_score: float | None = None
    cosine: float | None = None  # with angle vectors: the pooled vectors' cosine ...
    aligned: float | None = None  # ... and the angle vectors' at the best orientation
    density: float | None = None  # the entry's local density (see the module's docstring), when taken off

    def to_dict(self) -> dict:
        """The match as ``search --json`` writes it."""
        out = {"id": self.id, "score": round(float(self.score), 6), "image": self.image, "metadata": self.metadata}
        if self.aligned is not None:
            out["cosine"] = round(float(self.cosine), 6)
            out["aligned"] = round(float(self.aligned), 6)
        if self.density is not None:
            out["density"] = round(float(self.density), 6)
        if self.side:
            out["side"] = self.side
        if self.inliers is not None:
            out["inliers"] = self.inliers
            out["verified_score"] = round(float(self.verified_score), 6)
        return out


@dataclass
class QueryResult:
    """What a search answers: the best catalogue entries first, the photo's quality warnings, and a decision on
    the first once the catalogue is calibrated."""

    query: str
    matches: list[Match]
    warnings: list[str] = field(default_factory=list)
    decision: str | None = None  # "match" | "no_match" once the catalogue is calibrated

    def to_dict(self) -> dict:
        """The result as one line of ``search --json`` (and the web app's ``/api/identify``) gives it."""
        out = {"query": self.query, "results": [m.to_dict() for m in self.matches]}
        if self.decision is not None:
            out["decision"] = self.decision
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def group_by_entry(scores: np.ndarray, rows: np.ndarray, row_entry: list[str]) -> list[tuple[str, float, int]]:
    """Best face per entry: (entry id, score, row), best first."""
    best: dict[str, tuple[float, int]] = {}
    for s, r in zip(scores, rows):
        if r < 0:
            continue
        eid = row_entry[r]
        if eid not in best or s > best[eid][0]:
            best[eid] = (float(s), int(r))
    return sorted(((e, s, r) for e, (s, r) in best.items()), key=lambda t: -t[1])


class Searcher:
    """A catalogue opened for queries, with the embedder of the model that built it.

    ``align``: score the shortlist angle by angle too, where the model and the catalogue allow it (see the
    module's docstring); ``aligned`` says whether they do, and ``notes`` why not when the model could.
    ``density``: take half of each shortlisted entry's local density off its score."""

    def __init__(self, catalogue: str | Path | Catalogue, backend: str = "onnx", embedder: Embedder | None = None,
                 align: bool = True, density: bool = True):
        self.catalogue = catalogue if isinstance(catalogue, Catalogue) else Catalogue.open(catalogue)
        if embedder is None:
            cat = self.catalogue
            embedder = Embedder.for_catalogue(cat.model_source, json.loads(cat.meta("model_config")), cat.fingerprint,
                                              int(cat.meta("dim")), backend=backend)
        self.catalogue.check_model(embedder.fingerprint, embedder.source)
        self.embedder = embedder
        self.row_entry = self.catalogue.row_entries()
        self.calibration: dict = json.loads(self.catalogue.meta("calibration", "null") or "null") or {}
        self.notes: list[str] = []
        self.aligned = bool(align and embedder.angles and self.catalogue.has_angles())
        self.density = bool(density)
        self._densities: dict[int, float] = {}  # image row -> local density, as scored by this searcher
        self.faces_per_entry = self.catalogue.max_faces()
        if align and embedder.angles and not self.aligned and len(self.catalogue):
            self.notes.append(f"{self.catalogue.root}: no angle vectors stored (a catalogue built before they were "
                              f"kept), so candidates are ranked by the pooled cosine alone; rebuild the catalogue "
                              f"to compare coins angle by angle")
        finder = int(self.catalogue.meta("coin_finder", "1"))  # catalogues made before it was kept: version 1
        if finder != FINDER_VERSION:
            self.notes.append(f"{self.catalogue.root}: its coins were cropped by coin finder {finder}, queries now by "
                              f"{FINDER_VERSION} (see coinmatch.segment), so a coin is framed a little differently "
                              f"in each; rebuild the catalogue for the best matches")
        if self.calibration and not self.calibration_applies:
            self.notes.append(f"{self.catalogue.root}: calibrated on the {self.calibration.get('scoring', 'cosine')} "
                              f"score but searched by the {self.scoring} score, so no decision is given; run "
                              f"calibrate again")

    @property
    def scoring(self) -> str:
        """The embedding's score: "aligned" ((cosine + aligned) / 2 on the shortlist) or "cosine", with "-density"
        when half the local density is taken off."""
        return ("aligned" if self.aligned else "cosine") + ("-density" if self.density else "")

    @property
    def rescores(self) -> bool:
        """Whether the shortlist is scored again (aligned, or less its density)."""
        return self.aligned or self.density

    @property
    def calibration_applies(self) -> bool:
        """Whether the stored thresholds were set on the score this searcher gives (calibrations made before
        angle vectors were kept are on the cosine)."""
        return self.calibration.get("scoring", "cosine") == self.scoring

    def close(self) -> None:
        self.catalogue.close()

    def candidates(self, vectors: np.ndarray, top_k: int) -> list[list[tuple[str, float, int]]]:
        """Top entries per query vector: the nearest ``top_k`` times the most images an entry has, so that
        ``top_k`` distinct entries come back (or every entry, where there are fewer)."""
        scores, rows = self.catalogue.search(vectors, top_k * self.faces_per_entry)
        return [group_by_entry(s, r, self.row_entry)[:top_k] for s, r in zip(scores, rows)]

    def embed(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Vectors, and angle vectors when this searcher aligns (else None, and they are not computed)."""
        if self.aligned:
            return self.embedder.embed_with_angles(crops)
        return self.embedder.embed(crops), None

    def aligned_scores(self, angles: np.ndarray, rows: list[int]) -> np.ndarray:
        """The aligned cosine of one query's angle vectors (A x d) against these catalogue images'."""
        if not rows:
            return np.zeros(0)
        stored = self.catalogue.angle_vectors(rows)
        if stored.shape[1] != len(angles):
            raise CatalogueError(f"{self.catalogue.root}: images hold {stored.shape[1]} angle vectors each, the model "
                                 f"gives {len(angles)}: the catalogue is inconsistent; rebuild it")
        return cyclic_similarity(angles[None], stored)[0]

    def rescore(self, matches: list[Match], angles: np.ndarray | None) -> list[Match]:
        """Candidates scored again, best first: by (cosine + aligned cosine) / 2 where this searcher aligns
        (``angles``: the query's), and less half their local density where it takes density off."""
        if self.aligned:
            for m, a in zip(matches, self.aligned_scores(angles, [m.row for m in matches])):
                m.cosine, m.aligned = m.score, float(a)
                m.score = aligned_score(m.cosine, m.aligned)
        if self.density:
            for m, d in zip(matches, self.densities([m.row for m in matches])):
                m.density = float(d)
                m.score -= DENSITY_WEIGHT * m.density
        return sorted(matches, key=lambda m: -m.score)

    def score_one(self, cosine: float, angles: np.ndarray | None, row: int) -> float:
        """One catalogue image's score as :meth:`rescore` gives it, from its cosine."""
        score = aligned_score(cosine, float(self.aligned_scores(angles, [row])[0])) if self.aligned else cosine
        return score - DENSITY_WEIGHT * float(self.densities([row])[0]) if self.density else score

    def densities(self, rows: list[int]) -> np.ndarray:
        """Each image row's local density: the mean score, as this searcher scores a pair, between it and its
        DENSITY_K nearest other entries (each entry by its best face; of its 2 x DENSITY_K nearest by cosine
        where it aligns). Computed once per row and kept."""
        new = sorted({int(r) for r in rows} - self._densities.keys())
        if new:
            depth = 2 * DENSITY_K if self.aligned else DENSITY_K
            near = {}  # row -> (cosine, row) of its nearest other entries, each by its best face
            for row, ranked in zip(new, self.candidates(self.catalogue.vectors(new), depth + 1)):  # its own entry too
                near[row] = [(s, r) for e, s, r in ranked if e != self.row_entry[row]][:depth]
            if self.aligned:
                wanted = sorted(set(new) | {r for pairs in near.values() for _, r in pairs})
                angles = dict(zip(wanted, self.catalogue.angle_vectors(wanted)))
            for row, pairs in near.items():
                scores = np.array([s for s, _ in pairs], np.float64)
                if self.aligned and pairs:
                    others = np.stack([angles[r] for _, r in pairs])
                    scores = (scores + cyclic_similarity(angles[row][None], others)[0]) / 2
                self._densities[row] = float(np.sort(scores)[-DENSITY_K:].mean()) if len(scores) else 0.0
        return np.array([self._densities[int(r)] for r in rows])

    def matches_for(self, ranked: list[tuple[str, float, int]]) -> list[Match]:
        """Records for ranked (entry id, score, row) triples."""
        records = {r.row: r for r in self.catalogue.images([row for _, _, row in ranked])}
        return [Match(eid, s, records[row].relpath, records[row].metadata, row, records[row].side, records[row].thumb)
                for eid, s, row in ranked]

    def search_prepared(self, prepared: list[PreparedCoin], top_k: int = 5, verify: bool = False,
                        candidates: int = 20) -> list[QueryResult]:
        if not prepared:
            return []
        vectors, angles = self.embed([p.crop for p in prepared])
        depth = max(top_k, candidates) if verify or self.rescores else top_k
        out = []
        for i, (p, ranked) in enumerate(zip(prepared, self.candidates(vectors, depth))):
            warnings = p.notes + quality_warnings(p.crop, 2 * p.location.circle.r)
            matches = self.matches_for(ranked)
            if self.rescores:
                matches = self.rescore(matches, None if angles is None else angles[i])
            if verify:
                matches = self.verify(p, matches)
            result = QueryResult(p.source, matches[:top_k], warnings)
            result.decision = self.decide(result)
            out.append(result)
        return out

    def search_faces(self, faces: dict[str, PreparedCoin], top_k: int = 5, verify: bool = False,
                     candidates: int = 20) -> QueryResult:
        """One coin given by both faces ({"obverse": ..., "reverse": ...}): one ranking per catalogue coin.

        Each query face is compared with the entry's face of the same side (or, where the entry's
        sides are unknown, with its best face by cosine); the coin's score is the mean over the query's
        faces, each face's score as in the ordinary search (aligned where it is). With one face it is the
        ordinary search.
        """
        faces = {side: p for side, p in faces.items() if p is not None}
        if len(faces) == 1:
            return self.search_prepared(list(faces.values()), top_k, verify, candidates)[0]
        sides = list(faces)
        vectors, angles = self.embed([faces[s].crop for s in sides])
        depth = 2 * max(top_k, candidates)
        pool = {eid for ranked in self.candidates(vectors, depth) for eid, _, _ in ranked}
        scored = []
        for eid in pool:
            rows = self.catalogue.entry_rows(eid)
            vecs = self.catalogue.vectors([r for r, _ in rows])
            per_face = []
            for k, (side, vec) in enumerate(zip(sides, vectors)):
                same = [i for i, (_, s) in enumerate(rows) if s == side]
                options = same or [i for i, (_, s) in enumerate(rows) if s is None] or list(range(len(rows)))
                best = max(options, key=lambda i: float(vecs[i] @ vec))
                score = self.score_one(float(vecs[best] @ vec), None if angles is None else angles[k], rows[best][0])
                per_face.append((side, score, rows[best][0]))
            scored.append((eid, float(np.mean([sc for _, sc, _ in per_face])), per_face))
        scored.sort(key=lambda t: -t[1])
        scored = scored[:depth if verify else top_k]
        matches = [self.matches_for([(eid, score, per_face[0][2])])[0] for eid, score, per_face in scored]
        for m in matches:
            m.side = None
        if verify:  # each query face extracted once, matched against its candidate faces in one go
            per_side = {}
            for i, side in enumerate(sides):
                stored = [self.stored_features(eid, per_face[i][2]) for eid, _, per_face in scored]
                per_side[side] = verification.match_many(verification.extract(faces[side].crop), stored)
            for j, (m, (_, _, per_face)) in enumerate(zip(matches, scored)):
                results = [(sc, per_side[side][j].inliers) for side, sc, _ in per_face]
                m.inliers = sum(n for _, n in results)
                m.verified_score = float(np.mean([verification.combined_score(sc, n) for sc, n in results]))
        if verify:
            matches.sort(key=lambda m: -m.verified_score)
        warnings = [f"{side}: {w}" for side in sides for w in
                    faces[side].notes + quality_warnings(faces[side].crop, 2 * faces[side].location.circle.r)]
        result = QueryResult(" + ".join(faces[s].source for s in sides), matches[:top_k], warnings)
        result.decision = self.decide(result)
        return result

    def stored_features(self, entry_id: str, row: int) -> verification.LocalFeatures:
        """The local features stored with a catalogue image (computed once, when it was added)."""
        stored = self.catalogue.features(row)
        if stored is None:
            raise CatalogueError(f"{self.catalogue.root}: entry {entry_id!r} has no local features; rebuild the "
                                 f"catalogue with features to use verification")
        return verification.from_blob(*stored)

    def verify(self, prepared: PreparedCoin, matches: list[Match],
               query: verification.LocalFeatures | None = None) -> list[Match]:
        """Re-rank candidates by local-feature geometry; ``query``: the photo's features, if already extracted."""
        query = query if query is not None else verification.extract(prepared.crop)
        stored = [self.stored_features(m.id, m.row) for m in matches]
        for m, v in zip(matches, verification.match_many(query, stored)):
            m.inliers = v.inliers
            m.verified_score = verification.combined_score(m.score, v.inliers)
        return sorted(matches, key=lambda m: -m.verified_score)

    def decide(self, result: QueryResult) -> str | None:
        """match / no_match by the threshold calibrated for the way the query was scored, if any."""
        if not self.calibration or not self.calibration_applies:
            return None
        if not result.matches:
            return "no_match"
        top = result.matches[0]
        verified = top.verified_score is not None
        threshold = self.calibration.get("verified_threshold" if verified else "embedding_threshold")
        if threshold is None:
            return None
        return "match" if (top.verified_score if verified else top.score) >= threshold else "no_match"

    def search(self, photos: list[str | Path], top_k: int = 5, verify: bool = False,
               candidates: int = 20) -> list[QueryResult]:
        return self.search_prepared([prepare_photo(p) for p in photos], top_k, verify, candidates)

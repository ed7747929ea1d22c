"""Verification on real photos: the same coin verifies with many inliers, another coin of its type does not."""

import json

import cv2
import numpy as np

from coinmatch import verify as v
from coinmatch.compare import compare_photos
from coinmatch.prepare import prepare_photo


def _features(path):
    return v.extract(prepare_photo(path).crop)


def test_true_pairs_verify_and_same_type_coins_do_not(pair_paths):
    same, other = [], []
    for i, (cat, query, _) in enumerate(pair_paths[:10]):
        q = _features(query)
        same.append(v.match(q, _features(cat)).inliers)
        # a different coin of the same denomination, photographed in the same session
        other.append(v.match(q, _features(pair_paths[(i + 1) % 10][0])).inliers)
    assert np.median(same) >= 40
    assert max(other) < 15
    assert sum(s > o for s, o in zip(same, other)) >= 9


def test_rotation_does_not_matter(pair_paths):
    cat, query, _ = pair_paths[2]
    crop = prepare_photo(query).crop
    rotated = cv2.rotate(crop, cv2.ROTATE_90_CLOCKWISE)
    m = cv2.getRotationMatrix2D((crop.shape[1] / 2, crop.shape[0] / 2), 137, 1.0)
    rotated137 = cv2.warpAffine(crop, m, crop.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    ref = _features(cat)
    upright = v.match(v.extract(crop), ref).inliers
    for r in (rotated, rotated137):
        res = v.match(v.extract(r), ref)
        assert res.inliers >= 0.5 * upright and res.inliers >= 20


def test_blob_round_trip_keeps_matching(pair_paths):
    cat, query, _ = pair_paths[4]
    f = _features(cat)
    g = v.from_blob(*v.to_blob(f))
    assert g.keypoints.shape == f.keypoints.shape
    assert np.abs(g.descriptors - f.descriptors).max() < 0.01
    q = _features(query)
    assert abs(v.match(q, g).inliers - v.match(q, f).inliers) <= 5


def test_compare_draws_the_evidence(tmp_path, pair_paths):
    cat, query, _ = pair_paths[1]
    out = tmp_path / "compare.png"
    result = compare_photos(query, cat, out)
    assert result["inliers"] >= 20 and result["score"] > result["cosine"]
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] > 2 * img.shape[0] * 0.9
    json.dumps(result)


def test_both_faces_rank_one_coin_and_a_single_face_still_works(tmp_path, pair_paths):
    """Entries with two faces: the 'obverse' and 'reverse' are first shots of two real coins (as one lot),
    the queries their second shots."""
    from coinmatch.catalog.build import build_catalogue
    from coinmatch.search import Searcher

    from conftest import write_manifest

    lots = [(pair_paths[i], pair_paths[i + 1]) for i in range(0, 16, 2)]
    rows = [{"id": f"lot{i}", "obverse": str(o[0]), "reverse": str(r[0]), "sale": "demo"} for i, (o, r) in enumerate(lots)]
    root = tmp_path / "cat"
    build_catalogue(root, write_manifest(tmp_path / "lots.csv", rows), progress=False)
    searcher = Searcher(root)
    from coinmatch.prepare import prepare_photo

    for i, (o, r) in enumerate(lots):
        faces = {"obverse": prepare_photo(o[1]), "reverse": prepare_photo(r[1])}
        both = searcher.search_faces(faces, top_k=3)
        assert both.matches[0].id == f"lot{i}" and " + " in both.query
        verified = searcher.search_faces(faces, top_k=3, verify=True)
        assert verified.matches[0].id == f"lot{i}" and verified.matches[0].inliers >= 20
        single = searcher.search_faces({"obverse": None, "reverse": prepare_photo(r[1])}, top_k=3)
        assert single.matches[0].id == f"lot{i}"
    searcher.close()

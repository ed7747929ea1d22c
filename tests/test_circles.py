"""The finder's circles against two real photos of one coin (coinmatch.evaluation.circles)."""

import cv2
import numpy as np

from coinmatch import segment
from coinmatch.evaluation.circles import disagreement, photo_map
from coinmatch.images import load_rgb
from coinmatch.segment import Circle, locate_coin


def test_photo_map_recovers_a_known_turn_scale_and_shift(pair_paths):
    rgb = load_rgb(pair_paths[0][1])
    h, w = rgb.shape[:2]
    known = cv2.getRotationMatrix2D((w / 2, h / 2), 37.0, 0.8)
    known[:, 2] += (12.0, -7.0)
    moved = cv2.warpAffine(rgb, known, (w, h), borderMode=cv2.BORDER_REPLICATE)
    c = locate_coin(rgb).circle
    m = photo_map(rgb, moved, [c], [Circle(c.x, c.y, c.r)])  # generous: the moved coin lies within 1.15 radii
    assert m is not None and m.inliers >= 50
    assert abs(m.scale - 0.8) < 0.01
    carried = Circle(*(known @ np.array([c.x, c.y, 1.0])), 0.8 * c.r)
    assert disagreement(m, c, carried).worst < 0.01
    off = Circle(carried.x + 0.1 * carried.r, carried.y, 1.05 * carried.r)  # a circle found 10 % off and 5 % wide
    d = disagreement(m, c, off)
    assert abs(d.centre - 0.1 / 1.05) < 0.01 and abs(d.radius - np.log(1.05)) < 0.01


def test_photo_map_refuses_two_different_coins(pair_paths):
    (a, _, _), (b, _, _) = pair_paths[0], pair_paths[20]  # a 10 cent and a 1 euro
    ra, rb = load_rgb(a), load_rgb(b)
    assert photo_map(ra, rb, [locate_coin(ra).circle], [locate_coin(rb).circle]) is None


def test_two_real_photos_of_one_coin_give_the_same_circle(pair_paths, monkeypatch):
    """The coin's circle in the catalogue photo, carried into the query photo by the map between them, lies within
    3 % of the radius (centre and radius) of the circle found there, for all but one of the 24 demo pairs (all 24
    when measured, the worst 1.9 %). Hough's circle alone, before it is refined onto the rim, misses that on 8."""
    def worst_of(pairs):
        out = []
        for a, b, _ in pairs:
            ra, rb = load_rgb(a), load_rgb(b)
            ca, cb = locate_coin(ra).circle, locate_coin(rb).circle
            m = photo_map(ra, rb, [ca], [cb])
            assert m is not None, b
            out.append(disagreement(m, ca, cb).worst)
        return np.array(out)

    assert len(pair_paths) == 24
    refined = worst_of(pair_paths)
    assert (refined > 0.03).sum() <= 1, refined.round(3)
    monkeypatch.setattr(segment, "REFINE_PASSES", ())
    hough = worst_of(pair_paths[12:20])  # the 10 cent coins of IMG_4207, where Hough's circle wobbles most
    assert (hough > 0.03).sum() >= 4, hough.round(3)

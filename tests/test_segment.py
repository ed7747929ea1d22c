import cv2
import numpy as np

from coinmatch.evaluation.protocol import grey, rotate, shrink
from coinmatch.images import load_rgb
from coinmatch.segment import crop_coin, find_coins, locate_coin


def test_finds_the_coin_in_every_real_crop(pair_paths):
    for cat, query, _ in pair_paths:
        for path in (cat, query):
            rgb = load_rgb(path)
            loc = locate_coin(rgb)
            h, w = rgb.shape[:2]
            assert loc.found, path
            # these crops hold one coin filling most of the frame, near its centre
            assert 0.3 * min(h, w) < loc.circle.r < 0.62 * max(h, w), path
            assert abs(loc.circle.x - w / 2) < 0.25 * w and abs(loc.circle.y - h / 2) < 0.25 * h, path


def test_finds_a_coin_moved_off_centre_on_a_large_background(pair_paths):
    coin = load_rgb(pair_paths[3][0])
    ref = locate_coin(coin)
    canvas = np.full((900, 1200, 3), 235, np.uint8)  # a light table, coin near a corner
    y0, x0 = 80, 650
    canvas[y0:y0 + coin.shape[0], x0:x0 + coin.shape[1]] = coin
    loc = locate_coin(canvas)
    assert loc.found
    assert abs(loc.circle.x - (x0 + ref.circle.x)) < 0.1 * ref.circle.r
    assert abs(loc.circle.y - (y0 + ref.circle.y)) < 0.1 * ref.circle.r
    assert abs(loc.circle.r - ref.circle.r) < 0.1 * ref.circle.r


def test_finds_coins_that_leave_the_frame(demo_dir):
    """Catalogue photos crop tight: a coin cut by a fifth of its radius on one side is still found whole (with the
    old 15 % limit, 7 of these 60 were; an inner circle or a neighbour won the rest)."""
    photos = sorted((demo_dir / "catalogue").glob("*.jpg"))[:15]
    assert len(photos) == 15
    found = 0
    for path in photos:
        for quarter in range(4):  # the cut on each side in turn
            rgb = np.rot90(load_rgb(path), quarter).copy()
            whole = locate_coin(rgb).circle
            cut = int(round(whole.x - 0.8 * whole.r))  # the coin leaves the frame by 20 % of its radius
            assert cut > 0, path
            c = locate_coin(rgb[:, cut:]).circle
            found += max(abs(c.x + cut - whole.x), abs(c.y - whole.y), abs(c.r - whole.r)) < 0.1 * whole.r
    assert found >= 45, found  # 52 of 60 when measured


def test_the_same_coin_gives_the_same_circle_grey_turned_or_shrunk(demo_dir):
    """A finder that sees one coin finds one circle: on a grey copy, a turned copy and a copy shrunk to 128 px (the
    catalogue-like parts), the circle, mapped back, lies within 2 % of the radius of the photo's own (3 % shrunk).
    Hough's circle alone missed that on 16, 27 and 14 of these 48 photos; refined onto the rim, on 1, 3 and 2."""
    photos = sorted((demo_dir / "catalogue").glob("*.jpg"))[:24] + sorted((demo_dir / "queries").glob("*.jpg"))[:24]
    assert len(photos) == 48
    rng = np.random.default_rng(0)
    off = {"grey": 0, "turned": 0, "shrunk": 0}
    for path in photos:
        rgb = load_rgb(path)
        h, w = rgb.shape[:2]
        c = locate_coin(rgb).circle
        angle = float(rng.uniform(0, 360))
        x, y = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0) @ np.array([c.x, c.y, 1.0])
        small = shrink(rgb)
        k = w / small.shape[1]
        g, t, s = locate_coin(grey(rgb)).circle, locate_coin(rotate(rgb, angle)).circle, locate_coin(small).circle
        off["grey"] += max(abs(g.x - c.x), abs(g.y - c.y), abs(g.r - c.r)) > 0.02 * c.r
        off["turned"] += max(abs(t.x - x), abs(t.y - y), abs(t.r - c.r)) > 0.02 * c.r
        off["shrunk"] += max(abs(k * s.x - c.x), abs(k * s.y - c.y), abs(k * s.r - c.r)) > 0.03 * c.r
    assert off["grey"] <= 3 and off["turned"] <= 6 and off["shrunk"] <= 5, off


def test_a_bimetallic_coin_is_found_by_its_outer_ring(demo_dir, monkeypatch):
    """This 1 euro's inner disc wins Hough's vote alone; the ring about it, as well seen, takes its place, and
    refining keeps it on the outer rim."""
    from coinmatch import segment

    rgb = load_rgb(demo_dir / "catalogue" / "d-IMG_4199_13.jpg")  # 150 px, the coin nearly fills it
    refined = locate_coin(rgb).circle
    monkeypatch.setattr(segment, "REFINE_PASSES", ())
    outer = locate_coin(rgb).circle
    assert 0.4 * 150 < outer.r < 0.5 * 150
    monkeypatch.setattr(segment, "_outer_ring", lambda *_: None)
    inner = locate_coin(rgb).circle
    assert 1.3 < outer.r / inner.r < 1.5  # 1 euro: 23.25 mm across, its inner disc 16.25 mm
    assert np.hypot(outer.x - inner.x, outer.y - inner.y) < 0.05 * outer.r
    # photographed at a slant (the coin's edge shows on the left), the rim's centre is a few pixels off the disc's
    assert abs(refined.r - outer.r) < 0.03 * outer.r and np.hypot(refined.x - outer.x, refined.y - outer.y) < 5


def test_falls_back_to_the_whole_image_and_says_so():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    loc = locate_coin(noise)
    assert not loc.found and loc.method == "whole-image" and "whole image" in loc.note
    crop = crop_coin(noise, loc)
    assert crop.shape[0] == crop.shape[1] == 300


def test_crop_is_square_centred_and_masked(pair_paths):
    rgb = load_rgb(pair_paths[0][0])
    loc = locate_coin(rgb)
    masked = crop_coin(rgb, loc, mask=True, fill=0)
    assert masked.shape[0] == masked.shape[1]
    assert (masked[0, 0] == 0).all() and (masked[-1, -1] == 0).all()  # corners are background
    c = masked.shape[0] // 2
    assert masked[c - 5:c + 5, c - 5:c + 5].mean() > 20  # the coin itself is kept


def test_finds_many_coins_in_a_pile_photo(shared_dir):
    rgb = load_rgb(shared_dir / "euro-coins" / "photos" / "IMG_4187.jpg")
    coins = find_coins(rgb)
    assert len(coins) >= 8
    radii = np.array([c.r for c in coins])
    assert radii.max() < 3 * np.median(radii)

"""Training with tiny settings on real photos: the loss falls, the model file loads, embeds and builds a catalogue."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from coinmatch import CoinmatchError
from coinmatch.models.modelfile import load_model
from coinmatch.models.network import CoinEmbedder
from coinmatch.training.augment import AugmentConfig, augment, augmentation_grid
from coinmatch.training.cache import load_cache
from coinmatch.training.data import make_loader
from coinmatch.training.losses import LOSSES, SameTypeFirstMiner, build_loss, imprint
from coinmatch.training.loop import _clean_embeddings, freeze_early_layers

from conftest import demo_rows
from test_cli import BIN, ROOT


@pytest.fixture(scope="module")
def cache(demo_dir):
    return load_cache(demo_dir / "catalogue.csv", 72, type_column="denomination", progress=False)


def test_cache_holds_resized_uint8_crops_with_types(cache):
    assert cache.images.shape == (60, 72, 72, 3) and cache.images.dtype == np.uint8
    assert list(cache.labels) == list(range(60))
    assert set(cache.type_names) == {"10c", "1e"} and (cache.types >= 0).all()


def test_exact_and_perceptual_duplicates_are_dropped(tmp_path, demo_dir):
    from PIL import Image

    src = demo_dir / "catalogue" / sorted((demo_dir / "catalogue").iterdir())[0].name
    Image.open(src).save(tmp_path / "copy.png")  # same pixels, another file
    Image.open(src).point(lambda v: min(255, v + 3)).save(tmp_path / "brighter.png")  # same perceptual hash
    rows = [{"image": str(src)}, {"image": str(tmp_path / "copy.png")}, {"image": str(tmp_path / "brighter.png")},
            {"image": str(demo_dir / "catalogue" / sorted((demo_dir / "catalogue").iterdir())[5].name)}]
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["image"])
        w.writeheader()
        w.writerows(rows)
    c = load_cache(tmp_path / "m.csv", 64, progress=False)
    assert len(c) == 2 and len(c.dropped_duplicates) == 2


def test_worker_processes_build_the_same_cache_as_one(tmp_path, demo_dir, broken_files, caplog):
    """--workers: the coins are found in other processes, and the cache (crops, order, duplicates, the photos
    skipped and why) is the one a single process builds."""
    photos = sorted((demo_dir / "catalogue").iterdir())[:9]
    Image.open(photos[0]).save(tmp_path / "copy.png")  # a duplicate of the first, to be dropped in both
    rows = [*map(str, photos[:5]), str(tmp_path / "copy.png"), str(broken_files["truncated"]), *map(str, photos[5:])]
    with open(tmp_path / "m.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image"], *([r] for r in rows)])
    one = load_cache(tmp_path / "m.csv", 64, progress=False, disk=False)
    with caplog.at_level("WARNING"):
        spread = load_cache(tmp_path / "m.csv", 64, progress=False, disk=False, workers=2)
    assert len(one) == 9 and np.array_equal(one.images, spread.images) and one.names == spread.names
    assert one.dropped_duplicates == spread.dropped_duplicates == [(str(tmp_path / "copy.png"), str(photos[0]))]
    assert len(spread.skipped) == 1 and spread.skipped == one.skipped
    assert broken_files["truncated"].name in spread.skipped[0]
    assert any(broken_files["truncated"].name in r.getMessage() for r in caplog.records)  # said while caching


def test_workers_that_cannot_start_leave_the_cache_to_this_process(tmp_path, demo_dir):
    """A program piped on standard input cannot be loaded by spawned workers: the cache is built all the same."""
    code = ("from coinmatch.training.cache import load_cache\n"
            f"c = load_cache({str(demo_dir / 'catalogue.csv')!r}, 48, progress=False, disk=False, limit=6, workers=2)\n"
            "print(len(c))\n")
    proc = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "6" and "finding the remaining 6 coins in this process" in proc.stderr


def test_training_needs_no_faiss(tmp_path, demo_dir):
    """Training reads manifests and validates without the index library: a GPU machine may not have it."""
    code = (
        "import sys, json\n"
        "sys.modules['faiss'] = None\n"  # import faiss now fails, as where it is not installed
        "from coinmatch.training.loop import TrainConfig, train\n"
        f"cfg = TrainConfig(manifests=[{str(demo_dir / 'catalogue.csv')!r}], out={str(tmp_path / 't.cm')!r}, "
        "limit=16, epochs=1, image_size=64, batch_size=8, disk_cache=False, loss='triplet')\n"
        "s = train(cfg, progress=False)\n"
        "print(json.dumps([s['history'][-1]['epoch'], s['classes']]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [1, 14]  # one epoch over 16 photos less 2 held out: a class each
    assert (tmp_path / "t.cm").is_file()


def test_training_cache_folder_keeps_to_its_budget_least_recently_used_first(tmp_path, demo_dir, monkeypatch):
    import os
    import shutil
    import time

    from coinmatch.training.cache import budget_bytes, prune

    folder = tmp_path / "cache" / "training"
    folder.mkdir(parents=True)
    now = time.time() - 10 * 86400  # ten days ago
    for i, name in enumerate(["old.npz", "mid.npz", "new.npz"]):
        (folder / name).write_bytes(b"x" * 1000)
        os.utime(folder / name, (now + i, now + i))
    (folder / "dead.npz.123.tmp").write_bytes(b"x" * 5000)
    os.utime(folder / "dead.npz.123.tmp", (now, now))
    (folder / "live.npz.456.tmp").write_bytes(b"x" * 5000)  # a write still going on
    os.utime(folder / "old.npz")  # read just now: the most recently used
    deleted = prune(folder, 2000)
    assert sorted(p.name for p in deleted) == ["dead.npz.123.tmp", "mid.npz"]
    assert sorted(p.name for p in folder.iterdir()) == ["live.npz.456.tmp", "new.npz", "old.npz"]
    assert prune(folder, 0, keep=folder / "new.npz") == [folder / "old.npz"]  # the one just written stays

    monkeypatch.setenv("COINMATCH_TRAINING_CACHE_GB", "lots")
    with pytest.raises(CoinmatchError, match="COINMATCH_TRAINING_CACHE_GB"):
        budget_bytes()

    # through load_cache: with no room, only the cache just written is kept
    monkeypatch.setenv("COINMATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COINMATCH_TRAINING_CACHE_GB", "0")
    for p in sorted((demo_dir / "catalogue").iterdir())[:2]:
        shutil.copy(p, tmp_path / p.name)
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["image"])
        w.writeheader()
        w.writerows([{"image": p.name} for p in sorted((demo_dir / "catalogue").iterdir())[:2]])
    load_cache(tmp_path / "m.csv", 48, progress=False)
    load_cache(tmp_path / "m.csv", 64, progress=False)
    [kept] = folder.glob("*.npz")
    assert kept.name.startswith("m-64-")  # the 48 px cache, used less recently, made room
    assert np.load(kept)["images"].shape[1:3] == (64, 64)


def test_prepared_cache_is_read_back_from_disk_until_an_input_changes(tmp_path, demo_dir, monkeypatch, caplog):
    import shutil

    from coinmatch.training import cache as cache_module

    monkeypatch.setenv("COINMATCH_CACHE", str(tmp_path / "cache"))
    names = sorted((demo_dir / "catalogue").iterdir())[:4]
    for p in names:
        shutil.copy(p, tmp_path / p.name)
    shutil.copy(names[0], tmp_path / "twin.jpg")  # an exact duplicate: its drop is part of what the cache keeps
    (tmp_path / "broken.jpg").write_bytes(b"not an image")  # skipped, and named as skipped on every run
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["image", "denomination"])
        w.writeheader()
        w.writerows([{"image": p.name, "denomination": p.name[:3]} for p in names]
                    + [{"image": "twin.jpg", "denomination": "x"}, {"image": "broken.jpg", "denomination": "x"}])
    first = load_cache(tmp_path / "m.csv", 64, type_column="denomination", progress=False)
    [stored] = (tmp_path / "cache" / "training").glob("*.npz")
    assert stored.stat().st_size > first.images.nbytes

    build = cache_module._build
    monkeypatch.setattr(cache_module, "_build", lambda *a, **k: pytest.fail("built again though nothing changed"))
    caplog.clear()
    with caplog.at_level("WARNING"):
        again = load_cache(tmp_path / "m.csv", 64, type_column="denomination", progress=False)
    assert any("skipped" in r.getMessage() and "broken.jpg" in r.getMessage() for r in caplog.records)
    assert np.array_equal(again.images, first.images) and np.array_equal(again.types, first.types)
    assert (again.names, again.type_names, again.dropped_duplicates, again.skipped) == \
        (first.names, first.type_names, first.dropped_duplicates, first.skipped)
    assert len(again) == 4 and len(again.dropped_duplicates) == 1 and "broken.jpg" in again.skipped[0]
    monkeypatch.setattr(cache_module, "_build", build)

    # another size, or a photo replaced by another one, is another cache
    assert load_cache(tmp_path / "m.csv", 48, type_column="denomination", progress=False).size == 48
    shutil.copy(sorted((demo_dir / "catalogue").iterdir())[10], tmp_path / names[1].name)
    changed = load_cache(tmp_path / "m.csv", 64, type_column="denomination", progress=False)
    assert not np.array_equal(changed.images[1], first.images[1]) and np.array_equal(changed.images[0], first.images[0])

    # a damaged cache file is rebuilt (with a warning), never trusted
    assert len(list(stored.parent.glob("*.npz"))) == 3
    latest = max(stored.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)  # the changed inputs' cache
    latest.write_bytes(latest.read_bytes()[:1000])
    with caplog.at_level("WARNING"):
        rebuilt = load_cache(tmp_path / "m.csv", 64, type_column="denomination", progress=False)
    assert "unreadable training cache" in caplog.text and np.array_equal(rebuilt.images, changed.images)
    assert np.array_equal(load_cache(tmp_path / "m.csv", 64, type_column="denomination", progress=False).images,
                          changed.images)  # and the rebuilt file is whole again


def test_augmentations_differ_per_draw_and_are_reproducible(cache):
    crop = cache.images[0]
    a = augment(crop, np.random.default_rng(1), 64)
    b = augment(crop, np.random.default_rng(2), 64)
    c = augment(crop, np.random.default_rng(1), 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, c) and not np.array_equal(a, b)
    grey_always = AugmentConfig(grey=1.0, print_like=0.0)
    g = augment(crop, np.random.default_rng(3), 64, grey_always)
    assert np.abs(g[..., 0].astype(int) - g[..., 2].astype(int)).max() <= 3  # JPEG may add a little colour noise
    assert augmentation_grid(crop, n=12, out_size=48, cols=6).shape == (96, 288, 3)


def test_augment_grid_command_writes_the_views_a_person_checks(tmp_path, pair_paths):
    photo = pair_paths[0][0]
    out = tmp_path / "grid.png"
    proc = subprocess.run([BIN, "augment-grid", str(photo), "--out", str(out), "--n", "12", "--size", "48"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape == (96, 288, 3)  # 2 rows of 6 views, 48 px each
    views = [grid[r:r + 48, c:c + 48] for r in (0, 48) for c in range(0, 288, 48)]
    assert all(not np.array_equal(views[0], v) for v in views[1:])  # every view augmented, none the original
    bad = subprocess.run([BIN, "augment-grid", str(photo), "--out", str(tmp_path / "grid.txt")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1  # one line, however long the path
    assert f"{tmp_path / 'grid.txt'}: cannot write an image named .txt" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "grid.txt").exists()


def test_batches_hold_several_views_per_coin(cache):
    loader = make_loader(cache, 64, batch_size=12, views=2, seed=0)
    x, labels, types = next(iter(loader))
    assert x.shape == (12, 3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    counts = np.bincount(labels.numpy())
    assert set(counts[counts > 0]) == {2}  # 6 coins x 2 views
    firsts = {}
    for xi, li in zip(x, labels.tolist()):
        if li in firsts:
            assert not torch.equal(firsts[li], xi)  # each view augmented on its own
        firsts[li] = xi
    x2, labels2, _ = next(iter(make_loader(cache, 64, batch_size=12, views=2, seed=0)))
    assert torch.equal(labels, labels2) and torch.equal(x, x2)  # one seed, one sequence of batches


def test_a_set_smaller_than_a_batch_gives_batches_of_every_coin(cache):
    small = cache.subset(np.arange(5))
    small.labels = np.arange(5)
    batches = list(make_loader(small, 48, batch_size=48, views=2, seed=0))
    assert batches and all(len(labels) == 10 for _, labels, _ in batches)
    assert all(sorted(np.bincount(labels.numpy()).tolist()) == [2] * 5 for _, labels, _ in batches)
    with pytest.raises(ValueError, match="at least 2 coins"):
        make_loader(cache.subset(np.arange(1)), 48, batch_size=48, views=2, seed=0)


def test_too_few_readable_photos_are_refused_naming_the_manifest(tmp_path, demo_dir, broken_files, caplog):
    from coinmatch.training.loop import TrainConfig, train

    rows = demo_rows("catalogue.csv")[:3]
    manifest = tmp_path / "few.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "id"])
        w.writerows([str(demo_dir / r["image"]), r["id"]] for r in rows)
        w.writerow([str(broken_files["truncated"]), "broken"])
    out = tmp_path / "few.cm"
    cfg = TrainConfig(manifests=[str(manifest)], out=str(out), loss="triplet", epochs=1, image_size=64,
                      disk_cache=False)
    with caplog.at_level("WARNING"), pytest.raises(CoinmatchError) as e:
        train(cfg, progress=False)
    msg = str(e.value)
    assert "few.csv" in msg and "3 usable coin photos (1 unreadable" in msg and "at least 4" in msg
    assert any(broken_files["truncated"].name in r.getMessage() for r in caplog.records)  # said while caching
    assert not out.exists() and not cfg.work_dir.exists()  # a refused run leaves nothing behind
    # one readable photo more and the run goes through, its batches smaller than --batch-size
    rows = demo_rows("catalogue.csv")[3:5]
    with open(manifest, "a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([str(demo_dir / r["image"]), r["id"]] for r in rows)
    summary = train(cfg, progress=False)
    assert summary["skipped"] and load_model(out).config.trained


@pytest.mark.parametrize("option, value, says", [
    ("loss", "softmax", "unknown loss 'softmax'; choose one of triplet, arcface, subcenter-arcface, whitening"),
    ("mining", "medium", "unknown --mining 'medium'"),
    ("backbone", "vgg16", "unknown backbone 'vgg16'"),
    ("weights", "nowhere.pth", "nowhere.pth: weights file not found"),
    ("rotations", 0, "--rotations must be 1 or more, not 0"),
    ("batch_size", 1, "--batch-size must be 2 or more, not 1"),
    ("shrinkage", 0.0, "--shrinkage must be above 0"),
    ("limit", 0, "--limit must be 1 or more, not 0"),
    ("workers", -1, "--workers must be 0 or more, not -1"),
    ("whitening_views", 0, "--whitening-views must be 1 or more, not 0"),
    ("val_pairs", "nowhere.csv", "nowhere.csv: manifest not found"),
    ("device", "tpu", "--device tpu: choose cpu or cuda"),
    ("device", f"cuda:{torch.cuda.device_count()}", f"torch sees {torch.cuda.device_count()} CUDA GPU"),
])
def test_a_bad_option_is_refused_by_name_before_any_photo_is_read(tmp_path, option, value, says, monkeypatch):
    from coinmatch.training import loop

    def no_photos(*args, **kwargs):
        raise AssertionError("the training photos were read before the option was checked")

    monkeypatch.setattr(loop, "load_cache", no_photos)
    cfg = loop.TrainConfig(manifests=["any.csv"], out=str(tmp_path / "m.cm"), **{option: value})
    with pytest.raises(CoinmatchError, match=re.escape(says)):
        loop.train(cfg, progress=False)
    assert not cfg.work_dir.exists()


def test_a_missing_id_or_type_column_is_named_with_the_columns_the_file_has(tmp_path, demo_dir):
    from coinmatch.training.loop import load_real_pairs

    with pytest.raises(CoinmatchError, match=r"pairs.csv: no 'lot' column for --id-column; the columns are image, "
                                             r"coin_id, shot, denomination"):
        load_real_pairs(str(demo_dir / "pairs.csv"), "lot", 64)
    with pytest.raises(CoinmatchError, match=r"catalogue.csv: no 'mint' column for --type-column; the columns are "
                                             r"image, id, denomination"):
        load_cache(demo_dir / "catalogue.csv", 64, type_column="mint", progress=False, disk=False)


@pytest.mark.parametrize("loss_name", LOSSES)
def test_loss_falls_when_fitting_a_batch(cache, loss_name):
    torch.manual_seed(0)
    net = CoinEmbedder("efficientnet_lite0", dim=32)
    freeze_early_layers(net, 5)
    loss_fn, miner = build_loss(loss_name, num_classes=len(cache), dim=32, mining="all",
                                with_types=loss_name == "triplet")
    x, labels, types = next(iter(make_loader(cache, 64, batch_size=16, views=2, seed=1)))
    params = [p for p in net.parameters() if p.requires_grad] + list(loss_fn.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    net.train()
    losses = []
    for _ in range(12):
        emb = net(x)
        if miner is not None:
            if isinstance(miner, SameTypeFirstMiner):
                miner.types = types
            loss = loss_fn(emb, labels, miner(emb, labels))
        else:
            loss = loss_fn(emb, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("loss_name", ["arcface", "subcenter-arcface"])
def test_imprinted_class_centres_start_at_each_coin(cache, loss_name):
    torch.manual_seed(0)
    net = CoinEmbedder("efficientnet_lite0")  # the pooled ImageNet features, 1280-d
    emb = torch.from_numpy(_clean_embeddings(net, cache, 72, "cpu"))
    x, labels, _ = next(iter(make_loader(cache, 72, batch_size=16, views=2, seed=1)))
    with torch.no_grad():
        views = net.eval()(x)
    loss_fn, _ = build_loss(loss_name, num_classes=len(cache), dim=1280)

    def nearest_is_own() -> float:  # how many augmented views lie nearest a centre of their own coin
        nearest = (views @ loss_fn.W).reshape(len(views), len(cache), -1).amax(dim=2).argmax(dim=1)
        return float((nearest == labels).float().mean())

    with torch.no_grad():
        random_start, random_nearest = float(loss_fn(views, labels)), nearest_is_own()
    assert imprint(loss_fn, emb)
    centres = loss_fn.W.t().reshape(len(cache), -1, 1280)  # class c: its sub-centres
    own = torch.einsum("ckd,cd->ck", centres, torch.nn.functional.normalize(emb, dim=1))
    assert float(own.min()) > 0.99  # every centre (each sub-centre too) sits at its own coin
    with torch.no_grad():
        imprinted = float(loss_fn(views, labels))
        imprinted_nearest = nearest_is_own()
    # 60 coins: chance is 1/60; views turned, re-lit and blurred, by untrained features at 72 px
    assert imprinted_nearest >= random_nearest + 0.1 and imprinted < random_start
    with pytest.raises(ValueError, match="do not fit"):
        imprint(loss_fn, emb[:10])
    assert not imprint(build_loss("triplet", len(cache), 1280)[0], emb)


def test_same_type_miner_prefers_negatives_of_the_anchor_type():
    from pytorch_metric_learning import miners

    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    labels = torch.arange(8).repeat_interleave(2)
    types = torch.tensor([0, 0, 1, 1] * 4)
    miner = SameTypeFirstMiner(miners.TripletMarginMiner(margin=2.0, type_of_triplets="all"), min_fraction=0.0)
    miner.types = types
    a, p, n = miner(emb, labels)
    assert len(a) > 0 and bool((types[a] == types[n]).all())


def test_train_command_end_to_end_then_resume(tmp_path, demo_dir):
    out = tmp_path / "tiny.cm"
    args = [BIN, "train", str(demo_dir / "catalogue.csv"), "--out", str(out), "--loss", "triplet", "--limit", "24",
            "--epochs", "1", "--rotations", "4", "--image-size", "64", "--batch-size", "12", "--type-column", "denomination", "--val-pairs",
            str(demo_dir / "pairs.csv"), "--json"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["epochs_run"] == 1 and summary["train_images_per_s"] > 0
    start, row = summary["history"]
    assert start["epoch"] == 0 and start["loss"] is None and start["real_recall_at_1"] >= 0.5  # the network as it began
    assert row["epoch"] == 1 and row["loss"] > 0
    for key in ("loss", "val_pos_sim", "val_neg_sim", "val_roc_auc", "val_precision_at_1", "val_map_at_r",
                "real_recall_at_1"):
        assert key in row
    work = tmp_path / "tiny.train"
    for f in ("history.csv", "curves.png", "histograms.png", "last.pt"):
        assert (work / f).stat().st_size > 0
    model = load_model(out)
    assert model.config.trained and model.config.image_size == 64 and model.dim == 128
    # resume: one more epoch continues from the checkpoint
    args[args.index("--epochs") + 1] = "2"
    proc = subprocess.run(args + ["--resume"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert [h["epoch"] for h in json.loads(proc.stdout)["history"]] == [0, 1, 2]
    # the trained model builds a catalogue and searches it
    cat = tmp_path / "cat"
    proc = subprocess.run([BIN, "catalog", "build", str(cat), str(demo_dir / "catalogue.csv"), "--model", str(out),
                           "--no-features", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dim"] == 128 and (cat / "model.cm").is_file()
    q = next((demo_dir / "queries").iterdir())
    res = subprocess.run([BIN, "search", str(cat), str(q), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert len(json.loads(res.stdout)["results"]) == 5


def test_resume_refuses_a_checkpoint_of_other_options_and_a_broken_one(tmp_path, demo_dir):
    from dataclasses import replace

    from coinmatch.training.loop import TrainConfig, train

    cfg = TrainConfig(manifests=[str(demo_dir / "catalogue.csv")], out=str(tmp_path / "r.cm"), loss="triplet", limit=10,
                      epochs=1, image_size=64, batch_size=8, disk_cache=False, resume=True)
    assert [h["epoch"] for h in train(cfg, progress=False)["history"]] == [0, 1]  # no checkpoint yet: from the start
    ckpt = cfg.work_dir / "last.pt"
    before = ckpt.read_bytes()
    with pytest.raises(CoinmatchError, match=r"last.pt was made with other options \(--dim 128 -> 64; "
                                             r"--image-size 64 -> 96\)"):
        train(replace(cfg, epochs=2, dim=64, image_size=96), progress=False)
    with pytest.raises(CoinmatchError, match=r"other options \(--margin None -> 0.3\)"):  # any option, by name
        train(replace(cfg, epochs=2, margin=0.3), progress=False)
    assert ckpt.read_bytes() == before  # refused, nothing of the run touched
    assert [h["epoch"] for h in train(replace(cfg, epochs=2), progress=False)["history"]] == [0, 1, 2]
    assert sorted(p.name for p in cfg.work_dir.glob("*.tmp")) == []  # the checkpoint was written whole
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # cut short, as by a full disk
    with pytest.raises(CoinmatchError, match="last.pt: unreadable checkpoint .*start afresh without --resume"):
        train(replace(cfg, epochs=3), progress=False)


def test_an_interrupted_run_says_where_resume_goes_on_and_does(tmp_path, demo_dir, monkeypatch, caplog):
    from dataclasses import replace

    from coinmatch.training import loop

    real_loader = loop.make_loader

    def stop_in_epoch_2(*args, **kwargs):
        if args[-1] == 1:  # make_loader(..., workers, epoch): epochs count from 0
            raise KeyboardInterrupt  # Ctrl-C during the second epoch
        return real_loader(*args, **kwargs)

    cfg = loop.TrainConfig(manifests=[str(demo_dir / "catalogue.csv")], out=str(tmp_path / "i.cm"), loss="triplet",
                           limit=10, epochs=3, image_size=64, batch_size=8, disk_cache=False)
    monkeypatch.setattr(loop, "make_loader", stop_in_epoch_2)
    with caplog.at_level("WARNING"), pytest.raises(KeyboardInterrupt):
        loop.train(cfg, progress=False)
    assert any("interrupted in epoch 2" in r.getMessage() and "--resume goes on after epoch 1" in r.getMessage()
               for r in caplog.records)
    monkeypatch.setattr(loop, "make_loader", real_loader)
    assert [h["epoch"] for h in loop.train(replace(cfg, resume=True), progress=False)["history"]] == [0, 1, 2, 3]


def test_validation_through_onnx_runtime_gives_torchs_figures(tmp_path, cache):
    from coinmatch.models.modelfile import ModelConfig
    from coinmatch.training.validate import fixed_views, onnx_embed, validate

    torch.manual_seed(0)
    config = ModelConfig(dim=32, image_size=64, grey=True, rotations=2)
    net = CoinEmbedder("efficientnet_lite0", dim=32, grey=True, rotations=2).eval()
    views = fixed_views(cache, 64)
    embed = onnx_embed(net, config, tmp_path / "validation.onnx")
    assert embed is not None and (tmp_path / "validation.onnx").stat().st_size > 0
    by_torch, by_onnx = validate(net, views, "cpu"), validate(net, views, "cpu", embed=embed)
    np.testing.assert_allclose(by_onnx["_pos"], by_torch["_pos"], atol=1e-4)
    for key in ("val_pos_sim", "val_neg_sim", "val_roc_auc", "val_precision_at_1"):
        assert abs(by_onnx[key] - by_torch[key]) < 1e-3, key


def test_a_run_whose_epochs_score_worse_keeps_the_starting_network(tmp_path, demo_dir, monkeypatch):
    from coinmatch.training import loop

    real_validate, scores, saved = loop.validate, iter([0.9, 0.2, 0.4]), []

    def worse_after_training(*args, **kwargs):  # real validation, with the real-pair score of a run that degrades
        return {**real_validate(*args, **kwargs), "real_recall_at_1": next(scores)}

    real_save = loop.save_model
    monkeypatch.setattr(loop, "validate", worse_after_training)
    monkeypatch.setattr(loop, "save_model", lambda net, config, path: (saved.append(config.info["epoch"]),
                                                                      real_save(net, config, path)))
    out = tmp_path / "kept.cm"
    summary = loop.train(loop.TrainConfig(manifests=[str(demo_dir / "catalogue.csv")], out=str(out), loss="arcface",
                                          epochs=2,
                                          image_size=64, batch_size=12, limit=24, patience=5,
                                          val_pairs=str(demo_dir / "pairs.csv"), device="cpu"), progress=False)
    assert [h["epoch"] for h in summary["history"]] == [0, 1, 2] and summary["epochs_run"] == 2
    assert summary["best_epoch"] == 0 and saved == [0]  # neither epoch was written over the starting network
    info = load_model(out).config.info
    assert info["epoch"] == 0 and info["validation"]["real_recall_at_1"] == 0.9
    with open(tmp_path / "kept.train" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and rows[0]["loss"] == ""


def test_learned_whitening_damps_what_varies_within_pairs():
    from coinmatch.training.whitening import learned_whitening

    rng = np.random.default_rng(0)
    identity = rng.normal(size=(400, 8))  # what tells coins apart
    x = np.c_[identity, rng.normal(size=(400, 4)) * 0.1]
    y = np.c_[identity + rng.normal(size=(400, 8)) * 0.05, rng.normal(size=(400, 4)) * 6.0]  # nuisance: dims 8-11
    p, m = learned_whitening(x, y, dim=8, shrinkage=0.05)
    assert p.shape == (8, 12) and m.shape == (12,)

    def recall_at_1(a, b):  # cosine, as the catalogue ranks
        a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
        return np.mean(np.argmax(b @ a.T, axis=1) == np.arange(len(a)))

    assert recall_at_1((x - m) @ p.T, (y - m) @ p.T) > 0.95 > 0.7 > recall_at_1(x, y)
    with pytest.raises(ValueError):
        learned_whitening(x, y, dim=13)


def test_whitening_pairs_each_coin_with_its_views_view_major(cache):
    from coinmatch.training.whitening import positive_pairs

    plain, one = positive_pairs(cache, 64, seed=3)
    plain2, two = positive_pairs(cache, 64, seed=3, views=2)
    n = len(cache)
    assert len(plain) == len(plain2) == len(one) == n and len(two) == 2 * n
    assert all(np.array_equal(a, b) for a, b in zip(one, two[:n]))  # view 1 as before: one-view fits unchanged
    assert not any(np.array_equal(a, b) for a, b in zip(two[:n], two[n:]))  # view 2 is another draw
    with pytest.raises(ValueError, match="at least 1"):
        positive_pairs(cache, 64, seed=3, views=0)


def test_train_with_no_options_is_the_recipe_whitening(tmp_path, demo_dir):
    from coinmatch.training.loop import TrainConfig

    recipe = TrainConfig(manifests=["m.csv"], out="m.cm")  # what `coinmatch train M --out m.cm` trains
    assert (recipe.loss, recipe.grey, recipe.rotations, recipe.rings, recipe.whitening_views, recipe.dim,
            recipe.image_size) == ("whitening", True, 16, True, 2, 512, 224)
    triplet = TrainConfig(manifests=["m.csv"], out="m.cm", loss="triplet")
    assert (triplet.dim, triplet.image_size) == (128, 128)  # a gradient loss's own sizes
    out = tmp_path / "white.cm"  # the recipe at a size a test can afford: 2 angles, 24 dimensions, 96 px
    proc = subprocess.run([BIN, "train", str(demo_dir / "catalogue.csv"), "--out", str(out), "--rotations", "2",
                           "--dim", "24", "--image-size", "96", "--json", "--val-pairs", str(demo_dir / "pairs.csv"),
                           "--resume"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "has no checkpoint to go on from; fitting it from the start" in proc.stderr  # --resume: said, not ignored
    summary = json.loads(proc.stdout)
    before, row = summary["history"]  # the network it was fitted on, then the whitened one: the same held-out sets
    assert (before["epoch"], row["epoch"], summary["best_epoch"]) == (0, 1, 1)
    assert row["real_recall_at_1"] >= 0.8  # real photo pairs of 24 coins
    # what the fit is for: augmented views of unseen coins told from other coins. Five held-out coins make MAP@R move
    # in steps of 0.2 (0.4 before and after with the refined coin finder), so the continuous measures are asserted:
    # the gap between same-coin and other-coin cosines (the research's per-epoch check) grows, ROC AUC does not fall.
    assert row["val_pos_sim"] - row["val_neg_sim"] > before["val_pos_sim"] - before["val_neg_sim"]
    assert row["val_roc_auc"] >= before["val_roc_auc"] and row["val_map_at_r"] >= before["val_map_at_r"]
    assert (tmp_path / "white.train" / "curves.png").stat().st_size > 0
    model = load_model(out)
    cfg = model.config
    assert (cfg.grey, cfg.rotations, cfg.rings, cfg.whiten_dim, model.dim, cfg.info["loss"]) == (
        True, 2, True, 24, 24, "whitening")
    assert (cfg.info["views"], cfg.info["pairs"]) == (2, 2 * summary["train_images"])  # each coin, two views
    assert cfg.info["validation_before"]["val_map_at_r"] == before["val_map_at_r"]
    with open(tmp_path / "white.train" / "history.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1"]
    assert model.network.whiten.in_features == 4 * 1280  # Lite0's map pooled whole and over three rings


def test_mining_finds_the_coins_photographed_twice_and_nothing_else(demo_dir, embedder, monkeypatch):
    from coinmatch import verify
    from coinmatch.training.mining import mine_pairs, shortlists

    # 24 real coins, each photographed twice (two shots of one layout, minutes apart): 48 rows, each its own
    # class to the cache, as a training set that repeats coins unawares would be
    pairs_cache = load_cache(demo_dir / "pairs.csv", 160, type_column="denomination", progress=False, disk=False)
    ids = [n.split("/")[-1].rsplit("_", 1)[0] for n in pairs_cache.names]
    descriptors = embedder.embed(pairs_cache.plain(224))
    near = shortlists(descriptors, pairs_cache.types, 5)
    assert near.shape == (48, 5) and not (near == np.arange(48)[:, None]).any()
    assert (pairs_cache.types[near] == pairs_cache.types[:, None]).all()  # never a coin of another type
    mined = mine_pairs(pairs_cache.images, descriptors, pairs_cache.types, progress=False)
    found = {(ids[a], ids[b]) for a, b in mined.pairs}
    assert all(a == b for a, b in found)  # every pair is one coin twice
    assert len(found) >= 22 and (mined.inliers >= 60).all()  # and (nearly) every such coin is found

    # each pair is verified once, whichever shortlists hold it, and a rerun gives the same pairs, same evidence
    checked = []
    match_many = verify.match_many

    def counting(query, candidates):
        checked.append(len(candidates))
        return match_many(query, candidates)

    monkeypatch.setattr(verify, "match_many", counting)
    mine_pairs(pairs_cache.images, descriptors, pairs_cache.types, shortlist=5, progress=False)
    assert sum(checked) == len({(min(i, j), max(i, j)) for i in range(48) for j in near[i]})
    monkeypatch.undo()
    again = mine_pairs(pairs_cache.images, descriptors, pairs_cache.types, progress=False)
    assert np.array_equal(again.pairs, mined.pairs) and np.array_equal(again.inliers, mined.inliers)
    with pytest.raises(ValueError, match="48 crops but 3 descriptors"):
        mine_pairs(pairs_cache.images, descriptors[:3])


def test_mine_pairs_command_writes_real_pairs_that_val_pairs_reads(tmp_path, demo_dir):
    from coinmatch.training.loop import load_real_pairs

    out = tmp_path / "found" / "pairs.csv"
    proc = subprocess.run([BIN, "mine-pairs", str(demo_dir / "pairs.csv"), "--out", str(out), "--type-column",
                           "denomination", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    with open(out, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * summary["pairs"] and summary["pairs"] >= 22  # 24 coins photographed twice
    by_pair: dict[str, list[str]] = {}
    for r in rows:
        by_pair.setdefault(r["coin_id"], []).append(r["image"])
        assert int(r["inliers"]) >= 60 and (out.parent / r["image"]).is_file()  # paths from the CSV's folder
    # each pair is one coin: its first and second shot (10c-4191-004_a.jpg and _b.jpg)
    coins = [{Path(i).name.rsplit("_", 1)[0] for i in p} for p in by_pair.values()]
    assert all(len(p) == 2 for p in by_pair.values()) and all(len(c) == 1 for c in coins)
    real = load_real_pairs(str(out), "coin_id", 64)
    assert len(real.references) == summary["pairs"] and real.queries.shape == (summary["pairs"], 64, 64, 3)
    bad = subprocess.run([BIN, "mine-pairs", str(demo_dir / "pairs.csv"), "--out", str(out), "--shortlist", "0"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--shortlist must be 1 or more" in bad.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(rows) + 1  # the earlier CSV is untouched

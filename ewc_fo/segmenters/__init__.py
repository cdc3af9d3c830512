"""Prompt-driven segmenters: image + prompts -> masks + a quality score per mask.

One interface (:mod:`.base`), one module per backend (:mod:`.grabcut`, :mod:`.sam2`, :mod:`.onnx_sam`), one entry
point (:func:`create_segmenter`, :mod:`.registry`). Backends load lazily: importing this package
pulls in neither OpenCV's GrabCut module nor torch/SAM2.
"""

from __future__ import annotations

import importlib

from ewc_fo.segmenters.base import Prompt, Region, Segmentation, Segmenter
from ewc_fo.segmenters.registry import create_segmenter, list_segmenters, register

_LAZY = {
    "GrabCutSegmenter": "ewc_fo.segmenters.grabcut",
    "SAM2Segmenter": "ewc_fo.segmenters.sam2",
    "SAM2_DEFAULT_MODEL": "ewc_fo.segmenters.sam2",
    "SAM2_TINY_CONFIG": "ewc_fo.segmenters.sam2",
    "OnnxSAMSegmenter": "ewc_fo.segmenters.onnx_sam",
}

__all__ = ["Prompt", "Region", "Segmentation", "Segmenter", "create_segmenter", "list_segmenters",
           "register", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ewc_fo.segmenters' has no attribute {name!r}")

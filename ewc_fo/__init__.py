"""ewc-fo: Explain with Confidence — image-level labels to pixel masks inside FiftyOne.

Python API (imports are lazy so ``import ewc_fo`` stays fast):

- :func:`label` — run EWC on a dataset/view (``ewc_fo.fo.runs.label.label``);
- :func:`triage_views` — the review views, worst first;
- :func:`fit` — fit a classifier from the dataset's image-level labels;
- :func:`train_segmenter` — train a fast segmentation model on a run's trusted masks;
- :func:`evaluate` — compare masks with ground truth;
- :func:`export_coco`, :func:`export_voc` — write the masks out;
- ``ewc_fo.engine`` — the host-agnostic method (no FiftyOne import).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "label": "ewc_fo.fo.runs.label",
    "LabelSummary": "ewc_fo.fo.runs.label",
    "triage_views": "ewc_fo.fo.review.views",
    "triage_view": "ewc_fo.fo.review.views",
    "fit": "ewc_fo.fo.fit",
    "train_segmenter": "ewc_fo.fo.train_seg",
    "evaluate": "ewc_fo.fo.review.evaluate",
    "export_coco": "ewc_fo.fo.io.export",
    "export_voc": "ewc_fo.fo.io.export",
    "EWC": "ewc_fo.engine.pipeline",
    "EWCConfig": "ewc_fo.engine.pipeline",
    "load_classifier": "ewc_fo.models.classifier",
    "create_segmenter": "ewc_fo.segmenters",
    "create_explainer": "ewc_fo.engine.explainers",
    "list_explainers": "ewc_fo.engine.explainers",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ewc_fo' has no attribute {name!r}")

"""The dataset's most recent fitted classifier, as ``fit`` records it in ``dataset.info``.

No torch here: ``ewc-fo label`` and the compute form read it before any model is loaded.
"""

from __future__ import annotations

import os

import fiftyone as fo

#: key in ``dataset.info`` of the last checkpoint ``fit`` wrote for the dataset
INFO_KEY = "ewc_fo_classifier"


def record_fitted(dataset: fo.Dataset, path: str | os.PathLike, label_field: str) -> None:
    """Remember the checkpoint just written, so ``label`` and the compute form default to it."""
    from datetime import datetime, timezone

    dataset.reload()
    dataset.info = {**(dataset.info or {}), INFO_KEY: {
        "path": os.path.abspath(os.fspath(path)), "label_field": label_field,
        "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
    dataset.save()


def fitted_classifier(dataset: fo.Dataset) -> dict | None:
    """The dataset's most recent fitted classifier (``path``, ``label_field``, ``fitted_at``),
    None when none was fitted or its file is gone."""
    rec = (dataset.info or {}).get(INFO_KEY)
    if isinstance(rec, dict) and rec.get("path") and os.path.isfile(rec["path"]):
        return rec
    return None


def default_classifier(dataset: fo.Dataset) -> tuple[str, str]:
    """The classifier to use when none is given, and a line saying which and why."""
    rec = fitted_classifier(dataset)
    if rec:
        return rec["path"], (f"classifier: {rec['path']} (fitted on this dataset's {rec['label_field']!r} "
                             f"at {rec['fitted_at']}; --classifier to use another)")
    return "efficientnet_lite0", ("classifier: efficientnet_lite0 (ImageNet; no classifier fitted on this "
                                  "dataset yet: `ewc-fo fit`)")

"""Per-class confidence as labels, so the App's sidebar can filter on it.

``P_class_confidence`` is a plain dict, which the sidebar shows but cannot filter. The same
numbers as ``fo.Classifications`` in ``P_classes`` (one ``Classification`` per class of the
image, ``confidence`` = that class's mask confidence) get the label filter and the confidence
range slider, e.g. "dog masks below 0.4".
"""

from __future__ import annotations

from collections.abc import Mapping

import fiftyone as fo


def classes_field(prefix: str = "ewc") -> str:
    return f"{prefix}_classes"


def class_confidence_labels(class_confidence: Mapping[str, float] | None) -> fo.Classifications:
    """``{class: confidence}`` -> ``fo.Classifications`` (NaN confidences become None)."""
    out = []
    for name, c in (class_confidence or {}).items():
        c = None if c is None or c != c else float(c)
        out.append(fo.Classification(label=str(name), confidence=c))
    return fo.Classifications(classifications=out)


def backfill_class_labels(samples: fo.Dataset | fo.DatasetView, prefix: str = "ewc") -> int:
    """Write ``P_classes`` from ``P_class_confidence`` for runs labeled before it existed."""
    src, dst = f"{prefix}_class_confidence", classes_field(prefix)
    view = samples.exists(src)
    ids, dicts = view.values("id"), view.values(src)
    if ids:
        samples._dataset.set_values(
            dst, dict(zip(ids, (class_confidence_labels(d) for d in dicts), strict=True)), key_field="id"
        )
    return len(ids)

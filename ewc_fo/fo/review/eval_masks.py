"""Reading masks for evaluation: FiftyOne Segmentation labels to class-id arrays, class mapping
between a run and a ground truth, and the report's number formatting."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import fiftyone as fo
import numpy as np
from PIL import Image

from ewc_fo.runtime.errors import ConfigError


def is_segmentation(f) -> bool:
    return isinstance(f, fo.EmbeddedDocumentField) and issubclass(f.document_type, fo.Segmentation)


def norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def int_targets(targets: Mapping | None, field_name: str) -> dict[int, str] | None:
    if not targets:
        return None
    out = {}
    for k, v in targets.items():
        try:
            out[int(k)] = str(v)
        except (TypeError, ValueError):
            raise ConfigError(
                f"mask targets of {field_name!r} use RGB keys ({k!r}); only integer label maps are supported"
            ) from None
    return out


def class_mapping(dataset, pred_field, gt_field, num_classes, names, ignore_index, warn):
    """Return (class names by gt id, lookup table pred id -> gt id, whether classes are named)."""
    gt_t = int_targets(dataset.mask_targets.get(gt_field), gt_field) or int_targets(
        dataset.default_mask_targets, "default"
    )
    pred_t = int_targets(dataset.mask_targets.get(pred_field), pred_field)
    if names is not None:
        gt_t = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
        gt_t = {int(k): str(v) for k, v in gt_t.items()}
    if gt_t is None and pred_t is not None:
        gt_t = dict(pred_t)  # no GT targets: assume the same ids
    if gt_t is not None and ignore_index is not None:
        gt_t.pop(int(ignore_index), None)  # "void"/"ignore" is not a class
    if num_classes is None:
        if gt_t:
            num_classes = max(gt_t) + 1
        else:  # nothing named: every id below ignore_index may occur; absent ones are NaN
            num_classes = int(ignore_index) if ignore_index is not None and 0 < ignore_index <= 256 else 256
    named = bool(gt_t)
    gt_t = gt_t or {}
    class_names = [gt_t.get(i, "background" if i == 0 else str(i)) for i in range(num_classes)]

    lut = np.arange(max(256, num_classes), dtype=np.int64)  # identity by default
    if pred_t is not None:
        by_name = {}
        for i, n in enumerate(class_names):
            by_name.setdefault(n, i)
            by_name.setdefault(norm(n), i)
        lut[:] = num_classes  # ids the prediction did not name count as wrong
        lut[0] = 0
        unmatched = []
        for pid, pname in pred_t.items():
            if pid < 0 or pid >= lut.size:
                continue
            gid = by_name.get(pname, by_name.get(norm(pname)))
            if gid is None and pid == 0:
                gid = 0
            if gid is None:
                unmatched.append(pname)
                gid = num_classes
            lut[pid] = gid
        if unmatched:
            warn.append(f"predicted classes not in the ground truth (counted as wrong): {sorted(unmatched)}")
    return class_names, lut, named


def apply_lut(pred: np.ndarray, lut: np.ndarray, num_classes: int) -> np.ndarray:
    p = pred.astype(np.int64, copy=False)
    inside = (p >= 0) & (p < lut.size)
    return np.where(inside, lut[np.clip(p, 0, lut.size - 1)], num_classes)


def read_mask(label: fo.Segmentation) -> np.ndarray | None:
    """The label map of a Segmentation, from ``mask`` or ``mask_path`` (palette PNGs give indices)."""
    if label.mask is not None:
        m = np.asarray(label.mask)
    elif label.mask_path:
        with Image.open(label.mask_path) as im:
            m = np.asarray(im)  # mode "P" (VOC) yields palette indices, as wanted
    else:
        return None
    if m.ndim == 3:
        if m.shape[2] >= 3 and not (np.array_equal(m[..., 0], m[..., 1]) and np.array_equal(m[..., 0], m[..., 2])):
            raise ValueError("RGB mask; only integer label maps are supported")
        m = m[..., 0]
    return m


def resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    rows = np.minimum(((np.arange(h) + 0.5) * a.shape[0] / h).astype(np.int64), a.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * a.shape[1] / w).astype(np.int64), a.shape[1] - 1)
    return a[rows[:, None], cols[None, :]]


def recall_key(fraction: float) -> str:
    return f"recall_at_{round(fraction * 100)}"


def pct(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def num(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [nan_to_none(v) for v in x]
    return x


def none_to_nan(d: dict) -> dict:
    for k in ("miou", "pixel_accuracy", "mean_sample_iou"):
        if d.get(k) is None:
            d[k] = math.nan
    d["per_class_iou"] = {k: math.nan if v is None else v for k, v in (d.get("per_class_iou") or {}).items()}
    d["confidence"] = {
        f: {k: math.nan if v is None else v for k, v in s.items()} for f, s in (d.get("confidence") or {}).items()
    }
    return d

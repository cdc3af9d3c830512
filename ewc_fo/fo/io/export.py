"""Export an ewc-fo labeling run (docs/fields.md) to COCO instances JSON or a VOC folder: the entry
points. Shared steps live in :mod:`.export_base`, one module per format."""

from __future__ import annotations

import os

import fiftyone as fo

from ewc_fo.fo.io.classes import output_classes
from ewc_fo.fo.io.export_base import (  # noqa: F401  (public names, re-exported)
    COCO_FIXED,
    COCO_IMAGES,
    VOC_CLASS_FILES,
    VOC_DIRS,
    VOID,
    ExportResult,
    review_filter,
    safe_name,
)
from ewc_fo.fo.io.export_coco import export_coco
from ewc_fo.fo.io.export_dir import MANIFEST, check_out_dir, prepare_out_dir  # noqa: F401
from ewc_fo.fo.io.export_voc import export_voc
from ewc_fo.fo.io.mask_codecs import paste_instance, voc_colormap, voc_palette  # noqa: F401
from ewc_fo.runtime.errors import ConfigError


def check_classes(dataset: fo.Dataset, prefix: str, classes: str) -> None:
    """Raise the :class:`ConfigError` an export with ``classes`` would for the classes of the
    run's mask targets (a form checks as it is filled; instance-only labels are left to the export)."""
    targets = dataset.mask_targets.get(f"{prefix}_mask") or {}
    run = {int(k): str(v) for k, v in targets.items() if int(k) not in (0, VOID)}
    output_classes(run, classes, dataset.mask_targets, voc_default=False)


def export(
    samples: fo.Dataset | fo.DatasetView, out_dir: str | os.PathLike, fmt: str, **kwargs
) -> ExportResult:
    """Dispatch on ``fmt`` (``coco`` or ``voc``)."""
    if fmt == "coco":
        return export_coco(samples, out_dir, **kwargs)
    if fmt == "voc":
        return export_voc(samples, out_dir, **kwargs)
    raise ConfigError(f"unknown export format {fmt!r}; use coco or voc")

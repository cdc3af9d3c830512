"""What the COCO and VOC exports share: the run's fields per sample, image copies, names, filters.

Why not FiftyOne's own exporters: its COCO exporter turns every non-crowd mask into
polygons (holes and thin parts are lost without notice) and its VOC exporter writes
boxes only. Here COCO segmentations are compressed RLE made by pycocotools (exact, pixel
for pixel), polygons only on request, and VOC gets the class/object PNGs a segmentation
trainer expects, with 255 marking the pixels the run is not sure about.

Both exports stream: one sample at a time is read, its masks are written and dropped;
COCO ``images``/``annotations`` go to temporary fragment files that are joined at the end,
so memory does not grow with the dataset.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fiftyone as fo
import numpy as np
from PIL import Image, ImageOps

from ewc_fo.fo.io.export_dir import MANIFEST, check_out_dir, prepare_out_dir  # noqa: F401 - re-exported
from ewc_fo.fo.io.mask_codecs import (  # noqa: F401 - voc_colormap, paste_instance: public here too
    _band,
    _coco_segmentation,
    _components,
    _read_mask,
    _save_palette_png,
    paste_instance,
    voc_colormap,
    voc_palette,
)
from ewc_fo.fo.review.views import REJECT_TAG, REVIEWED_TAG
from ewc_fo.fo.runs.outcome import make_bar
from ewc_fo.fo.runs.record import check_prefix
from ewc_fo.runtime.errors import ConfigError

ProgressFn = Callable[[int, int], None]

VOID = 255
COCO_LABELS = "labels.json"
COCO_IMAGES = "data"
VOC_DIRS = ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets")
VOC_CLASS_FILES = ("class_names.txt", "labels.txt")
COCO_TMP = (".images.json.tmp", ".annotations.json.tmp")
#: names an export writes whatever the data: never written over unless a manifest lists them
COCO_FIXED = (COCO_LABELS, *COCO_TMP)
_EXIF_ORIENTATION = 0x0112
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportResult:
    """What an export wrote, for the CLI summary and for tests."""

    format: str
    out_dir: str
    num_images: int = 0
    num_instances: int = 0
    classes: list[str] = field(default_factory=list)
    labels_path: str = ""
    skipped: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        s = (
            f"{self.format.upper()} export: {self.num_images} images, {self.num_instances} "
            f"instances, {len(self.classes)} classes -> {self.out_dir}"
        )
        for why, n in sorted(self.skipped.items()):
            s += f"\n  skipped ({why}): {n}"
        return s


# ----------------------------------------------------------------------------- helpers






def safe_name(name: str, fallback: str = "item") -> str:
    """A file-name component that cannot climb out of a folder (no ``/``, no leading dot)."""
    s = _UNSAFE.sub("_", str(name)).strip("._-")[:150]
    return s or fallback


def _unique(stem: str, ext: str, used: set[str]) -> str:
    """``stem+ext``, or ``stem-2+ext``, ... so two source files with one basename both survive."""
    name, k = stem + ext, 1
    while name.lower() in used:
        k += 1
        name = f"{stem}-{k}{ext}"
    used.add(name.lower())
    return name


def review_filter(
    samples: fo.Dataset | fo.DatasetView, *, skip_rejected: bool = True, reviewed_only: bool = False
) -> fo.DatasetView:
    """Apply the review tags: drop ``ewc:reject`` and optionally keep only ``ewc:reviewed``."""
    view = samples.view()
    if skip_rejected:
        view = view.match_tags(REJECT_TAG, bool=False)
    if reviewed_only:
        view = view.match_tags(REVIEWED_TAG)
    return view


def _oriented_size(path: str) -> tuple[int, int]:
    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
            w, h = h, w
    return w, h


def _write_image(src: str, dst: Path, jpeg: bool) -> None:
    """Copy bytes when possible; re-encode when the EXIF orientation would otherwise make the
    pixels disagree with the masks (which are at the oriented size), or when JPEG is required."""
    with Image.open(src) as im:
        orient = im.getexif().get(_EXIF_ORIENTATION, 1)
        fmt = im.format
        if orient in (None, 1) and (not jpeg or fmt == "JPEG"):
            shutil.copyfile(src, dst)
            return
        out = ImageOps.exif_transpose(im)
        if jpeg:
            out.convert("RGB").save(dst, "JPEG", quality=95)
        else:
            out.save(dst, fmt)










class _RunFields:
    """Names and presence of the run's fields, plus the stable class table."""

    def __init__(self, view: fo.DatasetView, prefix: str):
        check_prefix(prefix)
        schema = view.get_field_schema()
        self.mask = f"{prefix}_mask" if f"{prefix}_mask" in schema else None
        self.instances = f"{prefix}_instances" if f"{prefix}_instances" in schema else None
        if not self.mask and not self.instances:
            raise ConfigError(
                f"no {prefix}_mask or {prefix}_instances field: nothing from a run with prefix "
                f"{prefix!r} to export"
            )
        self.confidence = f"{prefix}_confidence" if f"{prefix}_confidence" in schema else None
        # a person's fix (ewc_fo.fo.review.annotate) wins over the pseudo-mask and its instances
        fixed = f"{prefix}_mask_corrected"
        self.corrected = fixed if fixed in schema else None
        cc = f"{prefix}_class_confidence"
        self.class_confidence = cc if cc in schema else None
        # ids come from the run's mask targets (sorted), then any other instance label of the
        # whole dataset sorted by name: every export of a run, from any view, gets the same ids
        root = view._dataset
        targets = root.mask_targets.get(f"{prefix}_mask") or root.default_mask_targets or {}
        self.id_to_name: dict[int, str] = {}
        for k, v in sorted(((int(k), str(v)) for k, v in targets.items()), key=lambda kv: kv[0]):
            if k not in (0, VOID) and v not in self.id_to_name.values():
                self.id_to_name[k] = v
        extra: list[str] = []
        if f"{prefix}_instances" in root.get_field_schema():
            labels = root.distinct(f"{prefix}_instances.detections.label")
            extra = sorted(set(map(str, labels)) - set(self.id_to_name.values()))
        nxt = max(self.id_to_name, default=0) + 1
        for name in extra:
            self.id_to_name[nxt] = name
            nxt += 1
        self.name_to_id = {v: k for k, v in self.id_to_name.items()}

    def selected(self) -> list[str]:
        return [f for f in (self.mask, self.corrected, self.instances, self.confidence, self.class_confidence) if f]

    def is_corrected(self, sample) -> bool:
        return self.corrected is not None and sample[self.corrected] is not None

    def objects(self, sample, width: int, height: int, label_map: np.ndarray | None, stats: Counter):
        """(class id, full mask, confidence) per object: the run's instances when present,
        else connected components of its semantic mask."""
        dets = sample[self.instances] if self.instances and not self.is_corrected(sample) else None
        if dets is not None:
            for det in dets.detections:
                cid = self.name_to_id.get(str(det.label))
                full = paste_instance(det, width, height)
                if cid is None or full is None or not full.any():
                    stats["empty_or_unlabeled_instance"] += 1
                    continue
                yield cid, full, det.confidence
        elif label_map is not None:
            for cid, full in _components(label_map):
                if cid not in self.id_to_name:
                    stats["mask_id_not_in_mask_targets"] += 1
                    continue
                yield cid, full, None


def _iterate(view: fo.DatasetView, run: _RunFields, desc: str, progress: ProgressFn | None,
             progress_bar: bool = True):
    """The samples to export; after each one the bar (the label run's, shown even when stderr is
    not a terminal) and ``progress(done, total)`` move."""
    total = view.count()
    it = view.select_fields(run.selected()).iter_samples()
    bar = make_bar(total, progress_bar, desc)
    try:
        for i, sample in enumerate(it, 1):
            yield sample
            bar.update(1)
            if progress is not None:
                progress(i, total)
    finally:
        bar.close()


def _sample_size(sample, label_map: np.ndarray | None) -> tuple[int, int]:
    if label_map is not None:
        return label_map.shape[1], label_map.shape[0]
    return _oriented_size(sample.filepath)


# ----------------------------------------------------------------------------- COCO


def _exportable(sample, run, res) -> tuple[bool, np.ndarray | None]:
    """(whether the sample can be exported, its label map if any); counts why not in ``res``."""
    label_map = _read_mask(sample[run.corrected]) if run.is_corrected(sample) else None
    if label_map is None and run.mask:
        label_map = _read_mask(sample[run.mask])
    if label_map is None and (not run.instances or sample[run.instances] is None):
        res.skipped["not_labeled"] += 1
        return False, None
    if not os.path.isfile(sample.filepath):
        res.skipped["missing_image"] += 1
        return False, None
    return True, label_map

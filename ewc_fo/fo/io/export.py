"""Export an ewc-fo labeling run (docs/fields.md) to COCO instances JSON or a VOC folder.

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

import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import fiftyone as fo
import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from ewc_fo.fo.io.classes import is_voc, output_classes
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
from ewc_fo.fo.io.overlaps import exclusive_instances
from ewc_fo.fo.review.views import REJECT_TAG, REVIEWED_TAG
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


def _iterate(view: fo.DatasetView, run: _RunFields, desc: str, progress: ProgressFn | None):
    total = view.count()
    it = view.select_fields(run.selected()).iter_samples()
    with tqdm(total=total, desc=desc, unit="img", disable=None) as bar:
        for i, sample in enumerate(it, 1):
            yield sample
            bar.update(1)
            if progress is not None:
                progress(i, total)


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


def export_coco(
    samples: fo.Dataset | fo.DatasetView,
    out_dir: str | os.PathLike,
    prefix: str = "ewc",
    *,
    copy_images: bool = True,
    polygons: bool = False,
    overlapping: bool = False,
    classes: str | dict | None = None,
    skip_rejected: bool = True,
    reviewed_only: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ExportResult:
    """Write ``out_dir/labels.json`` (COCO instances, compressed RLE) and ``out_dir/data/``.

    ``file_name`` is relative to ``data/`` when images are copied, else the absolute source
    path. Category ids are the run's mask-target ids, so two exports of one run agree, or
    those of ``classes`` (``"voc"``, a file, a ``mask_targets`` field; see
    :func:`output_classes`). Instances of one image are made disjoint (one instance per
    pixel, see :func:`exclusive_instances`) unless ``overlapping``.
    Readable back with ``fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset,
    data_path=out/data, labels_path=out/labels.json, label_types=["segmentations"])``.
    """
    view = review_filter(samples, skip_rejected=skip_rejected, reviewed_only=reviewed_only)
    run = _RunFields(view, prefix)
    table, to_out = output_classes(run.id_to_name, classes, view._dataset.mask_targets, voc_default=False)
    out = prepare_out_dir(samples, out_dir, overwrite=overwrite, fixed=COCO_FIXED)
    root = out.root
    if copy_images:
        out.folder(COCO_IMAGES)
    res = ExportResult("coco", str(root), classes=list(table.values()))
    res.labels_path = str(out.file(COCO_LABELS))
    used: set[str] = out.taken(COCO_IMAGES)
    tmp_imgs = open(out.file(COCO_TMP[0]), "w")  # noqa: SIM115 - closed by the with below
    tmp_anns = open(out.file(COCO_TMP[1]), "w")  # noqa: SIM115
    try:
        with tmp_imgs, tmp_anns:
            for sample in _iterate(view, run, "COCO export", progress):
                ok, label_map = _exportable(sample, run, res)
                if not ok:
                    continue
                w, h = _sample_size(sample, label_map)
                src = Path(sample.filepath)
                if copy_images:
                    name = _unique(safe_name(src.stem, sample.id), src.suffix.lower(), used)
                    _write_image(str(src), out.file(COCO_IMAGES, name), jpeg=False)
                    file_name = name
                else:
                    file_name = str(src.resolve())
                res.num_images += 1
                image_id = res.num_images
                entry = {"id": image_id, "file_name": file_name, "width": w, "height": h}
                tmp_imgs.write(("," if image_id > 1 else "") + json.dumps(entry))
                objs = list(run.objects(sample, w, h, label_map, res.skipped))
                if not overlapping:
                    objs = exclusive_instances(objs, label_map, res.skipped)
                for cid, m, conf in objs:
                    seg, area, bbox = _coco_segmentation(m, polygons)
                    res.num_instances += 1
                    ann = {
                        "id": res.num_instances,
                        "image_id": image_id,
                        "category_id": to_out[cid],
                        "segmentation": seg,
                        "area": area,
                        "bbox": bbox,
                        "iscrowd": 0,
                    }
                    if conf is not None:
                        ann["score"] = float(conf)
                    tmp_anns.write(("," if res.num_instances > 1 else "") + json.dumps(ann))
        cats = [{"id": k, "name": v, "supercategory": "object"} for k, v in table.items()]
        info = {
            "description": f"ewc-fo export of run {prefix!r}",
            "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "version": "1.0",
        }
        with open(res.labels_path, "w") as f_out:
            f_out.write('{"info": ' + json.dumps(info) + ', "licenses": [], "categories": ')
            f_out.write(json.dumps(cats) + ', "images": [')
            with open(tmp_imgs.name) as f:
                shutil.copyfileobj(f, f_out)
            f_out.write('], "annotations": [')
            with open(tmp_anns.name) as f:
                shutil.copyfileobj(f, f_out)
            f_out.write("]}")
    finally:
        for t in (tmp_imgs.name, tmp_anns.name):
            if os.path.exists(t):
                os.unlink(t)
    return res


# ----------------------------------------------------------------------------- VOC




def export_voc(
    samples: fo.Dataset | fo.DatasetView,
    out_dir: str | os.PathLike,
    prefix: str = "ewc",
    *,
    uncertain_band: int = 0,
    min_confidence: float | None = None,
    split: str = "train",
    classes: str | dict | None = None,
    skip_rejected: bool = True,
    reviewed_only: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ExportResult:
    """Write a VOC segmentation folder: ``JPEGImages/``, ``SegmentationClass/`` and
    ``SegmentationObject/`` (palette PNGs, VOC colours), ``ImageSets/Segmentation/<split>.txt``
    and the class list (``class_names.txt`` and ``labels.txt``, background first).

    255 ("void", ignored by VOC trainers) marks pixels the run is unsure of:
    ``uncertain_band=N`` voids an N-px band on each side of every class/object boundary;
    ``min_confidence=t`` voids instances whose confidence < t, classes whose
    ``P_class_confidence`` < t, and whole images whose ``P_confidence`` < t.

    Class ids: those of ``classes`` (``"voc"``, a file, a ``mask_targets`` field; see
    :func:`output_classes`); by default VOC's 21 standard ids when every class of the run is
    a VOC class, else background then the run's classes in id order.
    """
    if uncertain_band < 0:
        raise ConfigError("uncertain_band must be >= 0")
    view = review_filter(samples, skip_rejected=skip_rejected, reviewed_only=reviewed_only)
    run = _RunFields(view, prefix)
    if classes is None and not is_voc(run.id_to_name.values()):
        # compact class list: index 0 background, then the run's classes in id order
        classes = dict(enumerate(run.id_to_name.values(), 1))
    table, to_out = output_classes(run.id_to_name, classes, view._dataset.mask_targets, voc_default=True)
    if max(table, default=0) >= VOID:
        raise ConfigError(f"class id {max(table)} does not fit a uint8 VOC mask (ids 1..254)")
    split_file = safe_name(split, "train") + ".txt"
    fixed = (*VOC_CLASS_FILES, f"ImageSets/Segmentation/{split_file}")
    out = prepare_out_dir(samples, out_dir, overwrite=overwrite, fixed=fixed)
    root = out.root
    for d in VOC_DIRS[:3]:
        out.folder(d)
    out.folder("ImageSets", "Segmentation")

    lut = np.full(256, VOID, dtype=np.uint8)
    lut[0] = 0
    for cid, out_id in to_out.items():
        lut[cid] = out_id
    names = ["background"] + [f"unused_{i}" for i in range(1, max(table, default=0) + 1)]
    for k, v in table.items():
        names[k] = v
    res = ExportResult("voc", str(root), classes=names[1:])
    used = {Path(n).stem for d in VOC_DIRS[:3] for n in out.taken(d)}  # never a foreign file's name
    with open(out.file("ImageSets", "Segmentation", split_file), "w") as ids_file:
        for sample in _iterate(view, run, "VOC export", progress):
            ok, raw = _exportable(sample, run, res)
            if not ok:
                continue
            w, h = _sample_size(sample, raw)
            objs = list(run.objects(sample, w, h, raw, res.skipped))
            if raw is not None:
                if np.any(lut[raw[raw != VOID]] == VOID):
                    res.skipped["samples_with_unknown_mask_ids"] += 1
                cls_map = lut[raw]
            else:  # semantic map from the instances, most confident on top
                cls_map = np.zeros((h, w), dtype=np.uint8)
                for cid, m, _ in sorted(objs, key=lambda o: -1.0 if o[2] is None else o[2]):
                    cls_map[m] = lut[cid]
            obj_map = np.zeros((h, w), dtype=np.uint8)
            for i, (_, m, _) in enumerate(objs[: VOID - 1], 1):
                obj_map[m] = i
            if len(objs) > VOID - 1:
                res.skipped["instances_over_254"] += len(objs) - (VOID - 1)
            res.num_instances += min(len(objs), VOID - 1)

            if uncertain_band > 0:
                cls_void = _band(cls_map, uncertain_band)
                obj_void = _band(obj_map, uncertain_band)
            else:
                cls_void = np.zeros((h, w), dtype=bool)
                obj_void = np.zeros((h, w), dtype=bool)
            if min_confidence is not None and not run.is_corrected(sample):  # a person's fix is sure
                conf = sample[run.confidence] if run.confidence else None
                if conf is not None and conf < min_confidence:
                    cls_void[:] = True
                    obj_void[:] = True
                per_class = (sample[run.class_confidence] if run.class_confidence else None) or {}
                low = {
                    run.name_to_id[str(n)]
                    for n, c in dict(per_class).items()
                    if str(n) in run.name_to_id and c is not None and c < min_confidence
                }
                for cid in low:
                    cls_void |= cls_map == lut[cid]
                for i, (cid, m, c) in enumerate(objs[: VOID - 1], 1):
                    if cid in low or (c is not None and c < min_confidence):
                        cls_void |= m
                        obj_void |= obj_map == i
            cls_map[cls_void] = VOID
            obj_map[obj_void] = VOID

            src = Path(sample.filepath)
            stem = _unique(safe_name(src.stem, sample.id), "", used)
            _write_image(str(src), out.file("JPEGImages", stem + ".jpg"), jpeg=True)
            _save_palette_png(cls_map, out.file("SegmentationClass", stem + ".png"))
            _save_palette_png(obj_map, out.file("SegmentationObject", stem + ".png"))
            ids_file.write(stem + "\n")
            res.num_images += 1
    text = "".join(c.replace("\n", " ").replace("\r", " ") + "\n" for c in names)
    for name in VOC_CLASS_FILES:
        out.file(name).write_text(text)
    res.labels_path = str(root / "class_names.txt")
    return res


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

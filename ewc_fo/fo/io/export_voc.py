"""VOC export: class and object palette PNGs, 255 where the run is not sure, ImageSets splits."""

from __future__ import annotations

import os
from pathlib import Path

import fiftyone as fo
import numpy as np

from ewc_fo.fo.io.classes import is_voc, output_classes
from ewc_fo.fo.io.export_base import (
    VOC_CLASS_FILES,
    VOC_DIRS,
    VOID,
    ExportResult,
    ProgressFn,
    _exportable,
    _iterate,
    _RunFields,
    _sample_size,
    _unique,
    _write_image,
    review_filter,
    safe_name,
)
from ewc_fo.fo.io.export_dir import prepare_out_dir
from ewc_fo.fo.io.mask_codecs import (
    _band,
    _save_palette_png,
)
from ewc_fo.runtime.errors import ConfigError


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
    progress_bar: bool = True,
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
    if safe_name(split, "") != split:  # "../../etc" was silently written as "etc"
        raise ConfigError(f"split {split!r} is not a plain name (letters, digits, '_', '.', '-'; no '/')")
    split_file = split + ".txt"
    fixed = (*VOC_CLASS_FILES, f"ImageSets/Segmentation/{split_file}")
    out = prepare_out_dir(samples, out_dir, overwrite=overwrite, fixed=fixed,
                          folders=(*VOC_DIRS, "ImageSets/Segmentation"))
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
    with out.sealing(open(out.file("ImageSets", "Segmentation", split_file), "w")) as ids_file:
        for sample in _iterate(view, run, "VOC export", progress, progress_bar):
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
            written = (out.file("JPEGImages", stem + ".jpg"), out.file("SegmentationClass", stem + ".png"),
                       out.file("SegmentationObject", stem + ".png"))
            _write_image(str(src), written[0], jpeg=True)
            _save_palette_png(cls_map, written[1])
            _save_palette_png(obj_map, written[2])
            out.seal(*written)
            ids_file.write(stem + "\n")
            res.num_images += 1
    text = "".join(c.replace("\n", " ").replace("\r", " ") + "\n" for c in names)
    for name in VOC_CLASS_FILES:
        out.file(name).write_text(text)
    out.finish()
    res.labels_path = str(root / "class_names.txt")
    return res

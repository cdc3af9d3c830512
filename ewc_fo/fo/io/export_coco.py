"""COCO instances export: compressed RLE made by pycocotools (exact), polygons on request;
streamed through fragment files so memory does not grow with the dataset."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import fiftyone as fo

from ewc_fo.fo.io.classes import output_classes
from ewc_fo.fo.io.export_base import (
    COCO_FIXED,
    COCO_IMAGES,
    COCO_LABELS,
    COCO_TMP,
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
    _coco_segmentation,
)
from ewc_fo.fo.io.overlaps import exclusive_instances


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
    progress_bar: bool = True,
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
    out = prepare_out_dir(samples, out_dir, overwrite=overwrite, fixed=COCO_FIXED,
                          folders=(COCO_IMAGES,) if copy_images else ())
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
            for sample in _iterate(view, run, "COCO export", progress, progress_bar):
                ok, label_map = _exportable(sample, run, res)
                if not ok:
                    continue
                w, h = _sample_size(sample, label_map)
                src = Path(sample.filepath)
                if copy_images:
                    name = _unique(safe_name(src.stem, sample.id), src.suffix.lower(), used)
                    dst = out.file(COCO_IMAGES, name)
                    _write_image(str(src), dst, jpeg=False)
                    out.seal(dst)
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
        out.finish()  # labels.json, also when stopped half way
    return res


# ----------------------------------------------------------------------------- VOC

"""VOC-style folders: JPEGImages/, SegmentationClass/ (ground-truth masks), ImageSets/."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import fiftyone as fo
import numpy as np
from PIL import Image

from ewc_fo.fo.io.export import safe_name
from ewc_fo.fo.io.importers._common import (
    DEFAULT_LABEL_FIELD,
    GT_MASK_FIELD,
    VOC_CLASSES,
    VOID,
    _add_samples,
    _finish,
    _is_image,
    _read_labels_json,
    _write_index_png,
    default_media_dir,
    make_label,
    new_dataset,
)
from ewc_fo.runtime.errors import ConfigError


def import_voc(
    name: str,
    path: str | os.PathLike,
    *,
    label_field: str = DEFAULT_LABEL_FIELD,
    gt_field: str = GT_MASK_FIELD,
    media_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """A VOC-style folder: ``JPEGImages/``, ``SegmentationClass/`` (palette PNGs, 0 background,
    255 void), ``ImageSets/Segmentation/*.txt`` (each file name becomes a tag), optional
    ``classes.json`` (``{"classes": [...]}``, else the 20 VOC classes) and ``labels.json``.

    Image-level labels are the classes present in each mask (``labels.json`` only fills in
    images without a mask). The mask becomes ``gt_field``; palette PNGs are re-saved as index
    PNGs under ``media_dir`` (FiftyOne would read them as RGB), plain index PNGs are used in
    place. Void (255) is left out of the mask targets, so evaluation ignores it.
    """
    root = Path(path).expanduser()
    jpeg_dir, seg_dir = root / "JPEGImages", root / "SegmentationClass"
    if not jpeg_dir.is_dir():
        raise ConfigError(f"{root} is not a VOC-style folder (no JPEGImages/)")
    classes = VOC_CLASSES
    if (root / "classes.json").is_file():
        raw = json.loads((root / "classes.json").read_text())
        classes = list(raw["classes"] if isinstance(raw, dict) else raw)
    if len(classes) > VOID:
        raise ConfigError("more than 255 classes do not fit a uint8 mask")
    table = _read_labels_json(root / "labels.json")[0] if (root / "labels.json").is_file() else {}
    images = {p.stem: p for p in jpeg_dir.iterdir() if _is_image(p)}
    tags: dict[str, list[str]] = {}
    sets_dir = root / "ImageSets" / "Segmentation"
    if sets_dir.is_dir():
        for txt in sorted(sets_dir.glob("*.txt")):
            for line in txt.read_text().split():
                tags.setdefault(line.strip(), []).append(txt.stem)
    if tags:
        ids = [i for i in tags if i in images]
    elif seg_dir.is_dir():
        ids = sorted(p.stem for p in seg_dir.glob("*.png") if p.stem in images)
    else:
        ids = sorted(images)
    out = Path(media_dir).expanduser() if media_dir else default_media_dir(name)
    ds = new_dataset(name, overwrite)

    def gen() -> Iterator[fo.Sample]:
        for i in ids:
            s = fo.Sample(filepath=str(images[i].resolve()), tags=tags.get(i, []))
            mp = seg_dir / f"{i}.png"
            labels: list[str] = table.get(i, [])
            if mp.is_file():
                with Image.open(mp) as im:
                    arr = np.asarray(im if im.mode in ("P", "L") else im.convert("L"))
                    mode = im.mode
                present = [int(v) for v in np.unique(arr) if 0 < v < len(classes)]
                labels = [classes[v] for v in present]
                gt_path = str(mp.resolve())
                if mode != "L":
                    gt_path = _write_index_png(arr, out / "gt_masks" / f"{safe_name(i)}.png")
                s[gt_field] = fo.Segmentation(mask_path=gt_path)
            s[label_field] = make_label(labels, multi=True)
            yield s

    _add_samples(ds, gen(), max_samples)
    return _finish(ds, label_field, str(root), "voc", (gt_field, dict(enumerate(classes))))


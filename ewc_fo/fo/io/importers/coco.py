"""COCO instances JSON + images: labels, instance masks and a semantic ground-truth mask."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import fiftyone as fo
import numpy as np

from ewc_fo.fo.io.importers._common import (
    DEFAULT_LABEL_FIELD,
    GT_INSTANCES_FIELD,
    GT_MASK_FIELD,
    VOID,
    _add_samples,
    _finish,
    _write_index_png,
    default_media_dir,
    log,
    make_label,
    new_dataset,
)
from ewc_fo.runtime.errors import ConfigError


def _looks_like_coco(p: Path) -> bool:
    """A COCO file names its images with ``file_name`` near the top (a labels.json of the
    folder layout maps names to labels and has none); read only the first 64 KiB."""
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
    except OSError:
        return False
    return '"file_name"' in head or ('"images"' in head and '"categories"' in head)


def find_coco_json(folder: str | os.PathLike, required: bool = True) -> Path | None:
    """The instances JSON of a COCO folder: ``instances*.json`` (also under ``annotations/``),
    else the one JSON there that looks like COCO (``labels.json`` of a FiftyOne export)."""
    root = Path(folder).expanduser()
    places = [root, root / "annotations"]
    found = [p for d in places if d.is_dir() for p in sorted(d.glob("instances*.json"))]
    if not found:
        found = [p for d in places if d.is_dir() for p in sorted(d.glob("*.json")) if _looks_like_coco(p)]
    if len(found) > 1:
        if not required:
            return found[0]
        raise ConfigError(
            f"{root} has several COCO files ({', '.join(p.name for p in found[:5])}): give the one to import"
        )
    if not found and required:
        raise ConfigError(f"no COCO instances JSON in {root} (looked for instances*.json and labels.json)")
    return found[0] if found else None


def import_coco(
    name: str,
    labels_path: str | os.PathLike,
    *,
    images_dir: str | os.PathLike | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    gt_field: str = GT_MASK_FIELD,
    instances_field: str = GT_INSTANCES_FIELD,
    media_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """COCO instances JSON + images: image-level labels = the categories annotated on each
    image; ``instances_field`` = one ``fo.Detection`` per annotation (mask cropped to its box,
    ``iscrowd`` kept as an attribute); ``gt_field`` = semantic mask (category ids, smaller
    objects drawn over larger ones) written under ``media_dir``.

    ``labels_path`` is the JSON or a folder holding it (:func:`find_coco_json`).
    ``images_dir`` defaults to ``data/`` or ``images/`` next to the JSON (or next to its
    ``annotations/`` folder), else its folder.
    """
    from pycocotools.coco import COCO

    lp = Path(labels_path).expanduser()
    if lp.is_dir():
        lp = find_coco_json(lp)
    if not lp.is_file():
        raise ConfigError(f"COCO labels file not found: {lp}")
    if images_dir is None:
        up = [lp.parent.parent] if lp.parent.name == "annotations" else []
        cands = [d / sub for d in [lp.parent, *up] for sub in ("data", "images")] + [lp.parent]
        img_root = next(c for c in cands if c.is_dir())
    else:
        img_root = Path(images_dir).expanduser()
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            coco = COCO(str(lp))
    except Exception as e:  # malformed JSON or missing keys
        raise ConfigError(f"cannot read COCO file {lp}: {e}") from None
    cats = {c["id"]: str(c["name"]) for c in coco.loadCats(coco.getCatIds())}
    remap = {cid: cid for cid in cats}
    if max(cats, default=0) >= VOID:  # ids must fit a uint8 mask: compact them
        remap = {cid: k for k, cid in enumerate(sorted(cats), 1)}
    if len(cats) >= VOID:
        raise ConfigError("more than 254 categories do not fit a uint8 mask")
    out = Path(media_dir).expanduser() if media_dir else default_media_dir(name)
    ds = new_dataset(name, overwrite)

    def gen() -> Iterator[fo.Sample]:
        for img_id in sorted(coco.getImgIds()):
            info = coco.loadImgs(img_id)[0]
            fp = Path(info["file_name"])
            fp = fp if fp.is_absolute() else img_root / fp
            if not fp.is_file():
                log.warning("COCO image not found, skipped: %s", fp)
                continue
            w, h = int(info["width"]), int(info["height"])
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=None))
            sem = np.zeros((h, w), dtype=np.uint8)
            dets = []
            for ann in sorted(anns, key=lambda a: -float(a.get("area", 0))):
                label = cats.get(ann["category_id"])
                if label is None:
                    continue
                crowd = int(ann.get("iscrowd", 0))
                if ann.get("segmentation"):
                    m = coco.annToMask(ann).astype(bool)
                    ys, xs = np.nonzero(m)
                    if not len(ys):
                        continue
                    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
                    sem[m] = remap[ann["category_id"]]
                    dets.append(fo.Detection(
                        label=label, bounding_box=[x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h],
                        mask=m[y0:y1, x0:x1], iscrowd=crowd,
                    ))  # fmt: skip
                elif ann.get("bbox"):
                    x, y, bw, bh = ann["bbox"]
                    dets.append(fo.Detection(
                        label=label, bounding_box=[x / w, y / h, bw / w, bh / h], iscrowd=crowd
                    ))  # fmt: skip
            s = fo.Sample(filepath=str(fp.resolve()))
            s[label_field] = make_label([d.label for d in dets], multi=True)
            s[instances_field] = fo.Detections(detections=dets)
            mpath = out / "gt_masks" / f"{int(img_id)}.png"
            s[gt_field] = fo.Segmentation(mask_path=_write_index_png(sem, mpath))
            yield s

    _add_samples(ds, gen(), max_samples)
    targets = {0: "background", **{remap[c]: n for c, n in cats.items()}}
    return _finish(ds, label_field, str(lp), "coco", (gt_field, targets))


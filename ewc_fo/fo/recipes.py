"""Importers that turn common image-classification layouts into FiftyOne datasets for ewc-fo.

Each importer builds a persistent dataset whose image-level labels sit in one field
(default ``labels``): a ``fo.Classification`` when the source has one class per image, a
``fo.Classifications`` when it can have several. Where the source has pixel ground truth
(VOC, COCO, CUB) it becomes ``ground_truth`` (``fo.Segmentation`` with ``mask_path``, class
ids in ``dataset.mask_targets["ground_truth"]``, 0 = background), the field ``ewc-fo
evaluate`` reads by default; COCO also gets ``ground_truth_instances``. They are shared by
``ewc-fo create`` and the scripts in ``recipes/``.

Files the importers have to write (decoded Hugging Face images, semantic masks, VOC palette
masks re-saved as plain index PNGs because FiftyOne reads palette PNGs as RGB) go under
``<fiftyone default_dataset_dir>/ewc_fo/<dataset>/_import/`` unless ``media_dir`` is given;
source images are referenced in place, never copied.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import fiftyone as fo
import numpy as np
from PIL import Image

from ..engine.errors import ConfigError
from .export import safe_name

log = logging.getLogger(__name__)

DEFAULT_LABEL_FIELD = "labels"
GT_MASK_FIELD = "ground_truth"
GT_INSTANCES_FIELD = "ground_truth_instances"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SPLIT_NAMES = {"train", "val", "valid", "validation", "test", "trainval"}
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
VOID = 255
_BATCH = 500


# ----------------------------------------------------------------------------- shared


def default_media_dir(name: str) -> Path:
    """Where an importer writes the files it has to create for dataset ``name``."""
    return Path(fo.config.default_dataset_dir) / "ewc_fo" / safe_name(name, "dataset") / "_import"


def new_dataset(name: str, overwrite: bool = False) -> fo.Dataset:
    """A fresh persistent dataset; an existing one of that name is an error unless ``overwrite``."""
    if not name:
        raise ConfigError("a dataset name is required")
    if fo.dataset_exists(name):
        if not overwrite:
            raise ConfigError(f"dataset {name!r} already exists; pass --overwrite to replace it")
        fo.delete_dataset(name)
    ds = fo.Dataset(name)
    ds.persistent = True
    return ds


def make_label(labels: Iterable[str], multi: bool) -> fo.Classification | fo.Classifications | None:
    """Image-level label value: ``Classifications`` for multi-label sources, else one ``Classification``."""
    names = list(dict.fromkeys(str(x) for x in labels if x is not None and str(x) != ""))
    if multi:
        return fo.Classifications(classifications=[fo.Classification(label=n) for n in names])
    return fo.Classification(label=names[0]) if names else None


def labeled_sample(path: Path, label_field: str, labels, multi: bool) -> fo.Sample:
    """A sample for ``path`` with its image-level label, if it has one."""
    s = fo.Sample(filepath=str(Path(path).resolve()))
    if labels:
        s[label_field] = make_label(labels, multi)
    return s


def _add_samples(
    ds: fo.Dataset, samples: Iterable[fo.Sample], max_samples: int | None = None
) -> int:
    """Add in batches so a large source never sits in memory as one list."""
    buf: list[fo.Sample] = []
    n = 0
    for s in samples:
        if max_samples is not None and n >= max_samples:
            break
        buf.append(s)
        n += 1
        if len(buf) >= _BATCH:
            ds.add_samples(buf)
            buf = []
    if buf:
        ds.add_samples(buf)
    return n


def _finish(
    ds: fo.Dataset, label_field: str, source: str, kind: str, gt: tuple[str, dict] | None = None
) -> fo.Dataset:
    """Record the class list, the GT mask targets (``gt = (field, targets)``) and provenance."""
    if len(ds) == 0:
        name = ds.name
        fo.delete_dataset(name)
        raise ConfigError(f"no images found in {source} ({kind})")
    if label_field in ds.get_field_schema():
        path = (
            f"{label_field}.classifications.label"
            if ds.get_field(label_field).document_type is fo.Classifications
            else f"{label_field}.label"
        )
        ds.classes = {**ds.classes, label_field: sorted(ds.distinct(path))}
    if gt:
        ds.mask_targets = {**ds.mask_targets, gt[0]: gt[1]}
    ds.info = {**ds.info, "ewc_import": {"kind": kind, "source": str(source), "label_field": label_field}}
    ds.save()
    return ds


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")


def _write_index_png(arr: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)
    return str(path)


def _read_labels_json(path: Path) -> tuple[dict[str, list[str]], bool]:
    """``{key: label | [labels]}`` with key an image stem, file name or relative path;
    also whether it is multi-label (any value is a list)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read labels file {path}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must map image names to a label or a list of labels")
    table = {str(k): ([v] if isinstance(v, str) else [str(x) for x in v]) for k, v in raw.items()}
    return table, any(isinstance(v, list) for v in raw.values())


# ----------------------------------------------------------------------------- folders / CSV


def import_folder(
    name: str,
    path: str | os.PathLike,
    *,
    labels_json: str | os.PathLike | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """A folder of images (recursive), labels from ``labels.json`` in it (or ``labels_json``):
    ``{"img_001": ["cat", "dog"], ...}``; images without an entry stay unlabeled."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"image folder not found: {root}")
    lj = Path(labels_json) if labels_json else root / "labels.json"
    table, multi = _read_labels_json(lj) if lj.is_file() else ({}, False)
    ds = new_dataset(name, overwrite)

    def gen() -> Iterator[fo.Sample]:
        for p in sorted(root.rglob("*")):
            if not _is_image(p):
                continue
            rel = p.relative_to(root).as_posix()
            labels = table.get(rel) or table.get(p.name) or table.get(p.stem)
            yield labeled_sample(p, label_field, labels, multi)

    _add_samples(ds, gen(), max_samples)
    return _finish(ds, label_field, str(root), "folder")


def import_classdirs(
    name: str,
    path: str | os.PathLike,
    *,
    label_field: str = DEFAULT_LABEL_FIELD,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """ImageNet style ``root/<class>/*.jpg`` (or ``root/<split>/<class>/...``, split as tag)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"folder not found: {root}")
    top = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    splits = bool(top) and all(d.name.lower() in SPLIT_NAMES for d in top)
    groups = [(d.name, c) for d in top for c in sorted(d.iterdir()) if c.is_dir()] if splits else [
        (None, d) for d in top
    ]
    ds = new_dataset(name, overwrite)

    def gen() -> Iterator[fo.Sample]:
        for split, cdir in groups:
            for p in sorted(cdir.rglob("*")):
                if _is_image(p):
                    s = fo.Sample(filepath=str(p.resolve()), tags=[split] if split else [])
                    s[label_field] = make_label([cdir.name], multi=False)
                    yield s

    _add_samples(ds, gen(), max_samples)
    return _finish(ds, label_field, str(root), "classdirs")


_PATH_COLS = ("filepath", "path", "image", "file", "filename", "image_path")
_LABEL_COLS = ("label", "labels", "class", "classes", "category", "categories")
_LABEL_SEP = re.compile(r"[;|]")


def import_csv(
    name: str,
    csv_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """A CSV of ``filepath,label(s)`` (header optional; several labels separated by ``;`` or
    ``|``). Relative paths are resolved against ``root`` (default: the CSV's folder). Rows
    whose image is missing are skipped with a warning."""
    cp = Path(csv_path).expanduser()
    if not cp.is_file():
        raise ConfigError(f"CSV file not found: {cp}")
    base = Path(root).expanduser() if root else cp.parent
    with open(cp, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    pi, li = 0, 1
    if rows and rows[0][0].strip().lower() in _PATH_COLS:
        head = [c.strip().lower() for c in rows.pop(0)]
        pi = next(i for i, c in enumerate(head) if c in _PATH_COLS)
        li = next((i for i, c in enumerate(head) if c in _LABEL_COLS), 1)
    parsed: list[tuple[Path, list[str]]] = []
    missing = 0
    for r in rows:
        p = Path(r[pi].strip()).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            missing += 1
            continue
        raw = r[li] if li < len(r) else ""
        labels = [x.strip() for x in _LABEL_SEP.split(raw) if x.strip()]
        parsed.append((p, labels))
    if missing:
        log.warning("%d rows of %s name missing images; skipped", missing, cp)
    multi = any(len(lab) > 1 for _, lab in parsed)
    ds = new_dataset(name, overwrite)

    def gen() -> Iterator[fo.Sample]:
        for p, labels in parsed:
            yield labeled_sample(p, label_field, labels, multi)

    _add_samples(ds, gen(), max_samples)
    return _finish(ds, label_field, str(cp), "csv")


# ----------------------------------------------------------------------------- VOC


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


# ----------------------------------------------------------------------------- COCO


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

    ``images_dir`` defaults to ``data/`` or ``images/`` next to the JSON, else its folder.
    """
    from pycocotools.coco import COCO

    lp = Path(labels_path).expanduser()
    if not lp.is_file():
        raise ConfigError(f"COCO labels file not found: {lp}")
    if images_dir is None:
        cands = [lp.parent / "data", lp.parent / "images", lp.parent]
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


# ----------------------------------------------------------------------------- CUB


def import_cub(
    name: str,
    path: str | os.PathLike,
    *,
    segmentations_dir: str | os.PathLike | None = None,
    threshold: int = 128,
    label_field: str = DEFAULT_LABEL_FIELD,
    gt_field: str = GT_MASK_FIELD,
    media_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """CUB-200-2011 as distributed: ``images/``, ``images.txt``, ``image_class_labels.txt``,
    ``classes.txt``, optional ``train_test_split.txt`` (tags ``train``/``test``).

    Class names drop the ``NNN.`` prefix (``001.Black_footed_Albatross`` ->
    ``Black_footed_Albatross``). The separate ``segmentations/`` download (looked for inside
    the folder, then next to it) becomes ``gt_field``: the annotators' soft mask binarised at
    ``threshold`` (>= 128 = majority of annotators) and set to the image's class id.
    """
    root = Path(path).expanduser()
    need = ["images.txt", "image_class_labels.txt", "classes.txt"]
    if not all((root / n).is_file() for n in need) or not (root / "images").is_dir():
        raise ConfigError(f"{root} is not a CUB-200-2011 folder (needs images/ and {', '.join(need)})")

    def table(fname: str) -> dict[str, str]:
        rows = (ln.split(maxsplit=1) for ln in (root / fname).read_text().splitlines() if ln.strip())
        return {r[0]: r[1].strip() for r in rows if len(r) == 2}

    images, img_cls, classes = table("images.txt"), table("image_class_labels.txt"), table("classes.txt")
    split = table("train_test_split.txt") if (root / "train_test_split.txt").is_file() else {}
    class_names = {int(k): re.sub(r"^\d+\.", "", v) for k, v in classes.items()}
    if max(class_names, default=0) >= VOID:
        raise ConfigError("CUB class ids must be < 255 to fit a uint8 mask")
    if segmentations_dir is not None:
        seg_root: Path | None = Path(segmentations_dir).expanduser()
    else:
        seg_root = next(
            (c for c in (root / "segmentations", root.parent / "segmentations") if c.is_dir()), None
        )
    out = Path(media_dir).expanduser() if media_dir else default_media_dir(name)
    ds = new_dataset(name, overwrite)

    def gen() -> Iterator[fo.Sample]:
        for iid in sorted(images, key=lambda k: int(k) if k.isdigit() else k):
            rel = images[iid]
            fp = root / "images" / rel
            if not fp.is_file():
                log.warning("CUB image not found, skipped: %s", fp)
                continue
            cid = int(img_cls[iid]) if iid in img_cls else None
            tags = [{"1": "train", "0": "test"}[split[iid]]] if split.get(iid) in ("0", "1") else []
            s = fo.Sample(filepath=str(fp.resolve()), tags=tags)
            if cid is not None:
                s[label_field] = make_label([class_names.get(cid, str(cid))], multi=False)
            sp = seg_root / Path(rel).with_suffix(".png") if seg_root else None
            if sp is not None and sp.is_file() and cid is not None:
                with Image.open(sp) as im:
                    soft = np.asarray(im.convert("L"))
                mask = np.where(soft >= threshold, cid, 0).astype(np.uint8)
                mp = out / "gt_masks" / f"{safe_name(iid)}.png"
                s[gt_field] = fo.Segmentation(mask_path=_write_index_png(mask, mp))
            yield s

    _add_samples(ds, gen(), max_samples)
    gt = (gt_field, {0: "background", **class_names}) if seg_root else None
    return _finish(ds, label_field, str(root), "cub", gt)


# ----------------------------------------------------------------------------- Hugging Face


def load_hf_dataset(source: Any, split: str = "train"):
    """A ``datasets.Dataset`` from an in-memory Dataset/DatasetDict, a ``save_to_disk``
    folder, parquet file(s), a local data folder, or a hub name (needs network)."""
    import datasets

    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise ConfigError(f"split {split!r} not in the dataset; it has {', '.join(source)}")
        return source[split]
    if isinstance(source, datasets.Dataset):
        return source
    p = Path(str(source)).expanduser()
    try:
        if p.exists():
            if p.is_dir() and any((p / f).is_file() for f in ("dataset_dict.json", "state.json")):
                return load_hf_dataset(datasets.load_from_disk(str(p)), split)
            parquet = [p] if p.suffix == ".parquet" else sorted(p.rglob("*.parquet")) if p.is_dir() else []
            if parquet:
                files = [str(x) for x in parquet]
                return datasets.load_dataset("parquet", data_files=files, split="train")
            return datasets.load_dataset(str(p), split=split)
        return datasets.load_dataset(str(source), split=split)
    except ConfigError:
        raise
    except Exception as e:  # network, missing split, unknown builder...
        raise ConfigError(f"cannot load Hugging Face dataset {source!r} (split {split!r}): {e}") from None


def _hf_columns(features, image_key: str | None, label_key: str | None) -> tuple[str, str | None, str]:
    """(image column, label column, kind) with kind in ``single``, ``multi``, ``string``, ``none``."""
    import datasets

    def class_label_of(f):
        if isinstance(f, datasets.ClassLabel):
            return "single"
        inner = f[0] if isinstance(f, list) and f else getattr(f, "feature", None)
        if isinstance(inner, datasets.ClassLabel):
            return "multi"
        return None

    if image_key is None:
        image_key = next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
        if image_key is None:
            raise ConfigError(f"no Image feature in the dataset (columns: {', '.join(features)})")
    elif image_key not in features:
        raise ConfigError(f"no column {image_key!r} (columns: {', '.join(features)})")
    if label_key is None:
        label_key = next((k for k, f in features.items() if class_label_of(f)), None)
        if label_key is None:
            label_key = next((k for k in ("label", "labels") if k in features), None)
    if label_key is None:
        return image_key, None, "none"
    if label_key not in features:
        raise ConfigError(f"no column {label_key!r} (columns: {', '.join(features)})")
    return image_key, label_key, class_label_of(features[label_key]) or "string"


def import_hf(
    name: str,
    source: Any,
    *,
    split: str = "train",
    image_key: str | None = None,
    label_key: str | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    media_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """A Hugging Face image-classification dataset (an ``Image`` feature and a ``ClassLabel``
    or a list of them); the image and label columns are found automatically unless named.

    Images are written as files (original encoded bytes, not re-encoded) under
    ``media_dir/images`` because FiftyOne samples point to files.
    """
    import datasets

    ds_hf = load_hf_dataset(source, split)
    image_key, label_key, kind = _hf_columns(ds_hf.features, image_key, label_key)
    names = None
    if kind == "single":
        names = ds_hf.features[label_key].names
    elif kind == "multi":
        f = ds_hf.features[label_key]
        names = (f[0] if isinstance(f, list) else f.feature).names
    cols = [image_key] + ([label_key] if label_key else [])
    raw = ds_hf.select_columns(cols).cast_column(image_key, datasets.Image(decode=False))
    if max_samples is not None:
        raw = raw.select(range(min(max_samples, len(raw))))
    img_dir = (Path(media_dir).expanduser() if media_dir else default_media_dir(name)) / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    ds = new_dataset(name, overwrite)

    def to_names(v) -> list[str]:
        if v is None:
            return []
        vals = v if isinstance(v, list | tuple) else [v]
        if names is None:
            return [str(x) for x in vals]
        return [names[int(x)] for x in vals if x is not None and 0 <= int(x) < len(names)]

    def gen() -> Iterator[fo.Sample]:
        for i, row in enumerate(raw):
            img = row[image_key] or {}
            data, src = img.get("bytes"), img.get("path")
            if data is None and src and os.path.isfile(src):
                ext = Path(src).suffix.lower() or ".png"
                dst = img_dir / f"{i:07d}{ext}"
                shutil.copyfile(src, dst)
            elif data is not None:
                try:
                    with Image.open(io.BytesIO(data)) as im:
                        fmt = (im.format or "PNG").lower()
                except Exception:
                    log.warning("row %d: undecodable image, skipped", i)
                    continue
                dst = img_dir / f"{i:07d}.{'jpg' if fmt == 'jpeg' else fmt}"
                dst.write_bytes(data)
            else:
                log.warning("row %d: no image, skipped", i)
                continue
            s = fo.Sample(filepath=str(dst.resolve()), tags=[split])
            labels = to_names(row[label_key]) if label_key else []
            if labels:
                s[label_field] = make_label(labels, multi=(kind == "multi"))
            yield s

    _add_samples(ds, gen())
    return _finish(ds, label_field, str(source if isinstance(source, str | os.PathLike) else "memory"), "hf")

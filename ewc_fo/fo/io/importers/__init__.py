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
source images are referenced in place, never copied. Image metadata (size, type) is computed
at import, so the App shows sizes. One module per source format; :func:`import_source`
dispatches on a format name (or ``auto``: :func:`detect_source`).
"""

from __future__ import annotations

import os
from pathlib import Path

import fiftyone as fo

from ewc_fo.fo.io.importers._common import (
    DEFAULT_LABEL_FIELD,
    GT_INSTANCES_FIELD,
    GT_MASK_FIELD,
    IMAGE_EXTS,
    SPLIT_NAMES,
    VOC_CLASSES,
    VOID,
    default_media_dir,
    labeled_sample,
    make_label,
    new_dataset,
)
from ewc_fo.fo.io.importers.coco import find_coco_json, import_coco
from ewc_fo.fo.io.importers.cub import import_cub
from ewc_fo.fo.io.importers.folders import import_classdirs, import_csv, import_folder
from ewc_fo.fo.io.importers.hf import import_hf, load_hf_dataset
from ewc_fo.fo.io.importers.voc import import_voc
from ewc_fo.runtime.errors import ConfigError

__all__ = [
    "DEFAULT_LABEL_FIELD", "GT_INSTANCES_FIELD", "GT_MASK_FIELD", "IMAGE_EXTS", "SOURCES",
    "SPLIT_NAMES", "VOC_CLASSES", "VOID", "default_media_dir", "detect_source", "find_coco_json",
    "import_classdirs", "import_coco", "import_csv", "import_cub", "import_folder", "import_hf",
    "import_source", "import_voc", "labeled_sample", "load_hf_dataset", "make_label", "new_dataset",
]  # fmt: skip

SOURCES = {
    "folder": "folder of images (recursive) + optional labels.json {image: label | [labels]}",
    "classdirs": "ImageNet style ROOT/<class>/*.jpg, or ROOT/<split>/<class>/*.jpg",
    "csv": "CSV of filepath,label(s); several labels separated by ; or |",
    "voc": "VOC-style folder: JPEGImages/, SegmentationClass/, ImageSets/Segmentation/",
    "coco": "COCO instances JSON, or a folder with one (images in data/ or images/ next to it)",
    "hf": "Hugging Face dataset: hub name, save_to_disk folder, parquet file(s) or data folder",
    "cub": "CUB-200-2011 folder (images/, images.txt, classes.txt, ...; segmentations/ if present)",
}


def detect_source(path: str | os.PathLike) -> str:
    """The source format of a local path, from its layout (the :data:`SOURCES` keys but ``hf``)."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "csv"
        if p.suffix.lower() == ".json":
            return "coco"
        if p.suffix.lower() == ".parquet":
            return "hf"
        raise ConfigError(f"cannot tell the format of {p}: give --from")
    if not p.is_dir():
        raise ConfigError(f"not found: {p} (a Hugging Face hub name needs --from hf)")
    if (p / "JPEGImages").is_dir():
        return "voc"
    if (p / "images.txt").is_file() and (p / "classes.txt").is_file():
        return "cub"
    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        return "hf"
    if find_coco_json(p, required=False) is not None:
        return "coco"
    if (p / "labels.json").is_file():
        return "folder"
    subdirs = [d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if subdirs and not any(f.is_file() and f.suffix.lower() in IMAGE_EXTS for f in p.iterdir()):
        return "classdirs"
    return "folder"


def import_source(
    kind: str,
    name: str,
    path,
    *,
    label_field: str = DEFAULT_LABEL_FIELD,
    overwrite: bool = False,
    max_samples: int | None = None,
    media_dir: str | os.PathLike | None = None,
    **options,
) -> fo.Dataset:
    """Import ``path`` as format ``kind`` (a :data:`SOURCES` key, or ``auto``).

    ``options`` are the format's own: ``images_dir`` (coco), ``labels_json`` (folder),
    ``root`` (csv), ``split``/``image_key``/``label_key`` (hf), ``segmentations_dir`` (cub);
    ``None`` values are ignored, so a CLI can pass all of them.
    """
    if kind == "auto":
        kind = detect_source(path)
    if kind not in SOURCES:
        raise ConfigError(f"unknown source format {kind!r}: use one of {', '.join(SOURCES)} or auto")
    opts = {k: v for k, v in options.items() if v is not None}
    allowed = {
        "folder": {"labels_json"}, "classdirs": set(), "csv": {"root"}, "voc": set(),
        "coco": {"images_dir"}, "hf": {"split", "image_key", "label_key"}, "cub": {"segmentations_dir"},
    }[kind]  # fmt: skip
    extra = sorted(set(opts) - allowed)
    if extra:
        raise ConfigError(f"option(s) {', '.join(extra)} do not apply to a {kind} source")
    common = dict(label_field=label_field, overwrite=overwrite, max_samples=max_samples)
    if kind in ("voc", "coco", "hf", "cub"):
        common["media_dir"] = media_dir
    fn = {
        "folder": import_folder, "classdirs": import_classdirs, "csv": import_csv, "voc": import_voc,
        "coco": import_coco, "hf": import_hf, "cub": import_cub,
    }[kind]  # fmt: skip
    return fn(name, path, **common, **opts)

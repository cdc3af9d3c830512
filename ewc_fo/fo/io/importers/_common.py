"""What every importer shares: a fresh dataset, label values, batched adds, and the finish
(class list, ground-truth mask targets, image metadata, provenance)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import fiftyone as fo
import numpy as np
from PIL import Image

from ewc_fo.fo.io.classes import VOC_CLASSES  # noqa: F401  (re-exported by ewc_fo.fo.io.importers)
from ewc_fo.fo.io.export import safe_name
from ewc_fo.fo.review.summary import exact_count
from ewc_fo.fo.runs.claims import schema_lock
from ewc_fo.runtime.errors import ConfigError, SchemaBusyError

log = logging.getLogger("ewc_fo.fo.io.importers")

DEFAULT_LABEL_FIELD = "labels"
GT_MASK_FIELD = "ground_truth"
GT_INSTANCES_FIELD = "ground_truth_instances"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SPLIT_NAMES = {"train", "val", "valid", "validation", "test", "trainval"}
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
    try:
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
    except BaseException:  # a failed import never leaves a half-made dataset behind
        _discard(ds)
        raise
    return n


def _discard(ds: fo.Dataset) -> None:
    name = ds.name
    try:
        fo.delete_dataset(name)
    except Exception:  # the database itself failed: the original error says so
        log.warning("could not delete the partly imported dataset %r", name)


def utf8_named(paths: Iterable[Path], skipped: list) -> Iterator[Path]:
    """``paths`` whose names are valid UTF-8 (FiftyOne stores paths as UTF-8); the others
    are appended to ``skipped`` (they used to fail the whole import with a traceback)."""
    for p in paths:
        try:
            str(p).encode("utf-8")
        except UnicodeEncodeError:
            skipped.append(p)
            continue
        yield p


def _finish(
    ds: fo.Dataset, label_field: str, source: str, kind: str, gt: tuple[str, dict] | None = None,
    skipped: int = 0,
) -> fo.Dataset:
    """Record the class list, the GT mask targets (``gt = (field, targets)``), each image's
    metadata and the provenance."""
    if exact_count(ds) == 0:  # counted: an estimated 0 must never delete a finished import
        name = ds.name
        fo.delete_dataset(name)
        raise ConfigError(f"no images found in {source} ({kind})")
    try:
        _finish_document(ds, label_field, source, kind, gt, skipped)
    except SchemaBusyError:  # refused before changing anything: the samples are whole, keep them
        raise
    except BaseException:
        _discard(ds)
        raise
    return ds


def _finish_document(ds, label_field, source, kind, gt, skipped) -> None:
    ds.compute_metadata(progress=False)  # image sizes for the App and for exports
    # the dataset is already visible by name (the App, a label run): its document changes
    # under the schema lock, as every other writer's do
    with schema_lock(ds):
        if label_field in ds.get_field_schema():
            path = (
                f"{label_field}.classifications.label"
                if ds.get_field(label_field).document_type is fo.Classifications
                else f"{label_field}.label"
            )
            ds.classes = {**ds.classes, label_field: sorted(ds.distinct(path))}
        if gt:
            ds.mask_targets = {**ds.mask_targets, gt[0]: gt[1]}
        info = {"kind": kind, "source": str(source), "label_field": label_field}
        if skipped:
            info["skipped_names"] = skipped
        ds.info = {**ds.info, "ewc_import": info}
        ds.save()


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


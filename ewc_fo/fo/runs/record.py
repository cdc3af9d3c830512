"""Run bookkeeping on a dataset: which fields a run owns, its configuration and status.

A run is registered as a FiftyOne custom run under its prefix (``dataset.get_run_info(P)``),
so every mask is traceable to the model, explainers, thresholds, segmenter and package
versions that made it. The run record is also how ewc-fo knows which fields are its own:
it never writes or deletes a field that no run of its own declared.
"""

from __future__ import annotations

import logging
import os
import re
from importlib import metadata

import fiftyone as fo

from ewc_fo.fo.review.app_config import forget_run
from ewc_fo.fo.runs.claims import schema_lock
from ewc_fo.fo.runs.output_dir import release_owner
from ewc_fo.fo.runs.prefix import PREFIX_RE, check_prefix  # noqa: F401 - the rule lives where the CLI can reach it light
from ewc_fo.runtime.errors import ConfigError

log = logging.getLogger(__name__)

RUN_TYPE = "ewc_fo.label"
#: status of a record saved just before its fields are declared: a run killed before it
#: reached "running" left fields that the next run of the prefix recognises and clears
DECLARING = "declaring"
#: sub-folders of a run's output directory, one per kind of file
OUTPUT_SUBDIRS = ("masks", "heatmaps", "maps")
#: name start of the temporary files behind atomic writes (cleared by the next run)
TEMP_PREFIX = ".ewc-tmp-"
# what a run writes: <sample id>.png (masks), <sample id>_<map>.png (heatmaps), <sample id>.npz (maps)
_RUN_FILE = re.compile(r"^([0-9a-f]{24})(?:_[A-Za-z0-9_]+)?\.(?:png|npz)$")


def field_names(prefix: str, explainer_keys: list[str]) -> dict[str, str]:
    """Every sample field a run with this prefix writes (docs/fields.md)."""
    f = {
        "mask": f"{prefix}_mask",
        "instances": f"{prefix}_instances",
        "confidence": f"{prefix}_confidence",
        "agreement": f"{prefix}_agreement",
        "mass_inside": f"{prefix}_mass_inside",
        "class_confidence": f"{prefix}_class_confidence",
        "classes": f"{prefix}_classes",
        "scores": f"{prefix}_scores",
        "maps_path": f"{prefix}_maps_path",
        "error": f"{prefix}_error",
        "error_kind": f"{prefix}_error_kind",
        "heatmap_fused": f"{prefix}_heatmap_fused",
    }
    for k in explainer_keys:
        f[f"heatmap_{safe_key(k)}"] = f"{prefix}_heatmap_{safe_key(k)}"
    return f


def safe_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", key)


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("ewc-fo", "torch", "torchvision", "grad-cam", "captum", "sam2", "fiftyone", "opencv-python-headless"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def get_run(dataset: fo.Dataset, prefix: str) -> dict | None:
    """The stored run record for ``prefix``, or None."""
    if prefix not in dataset.list_runs():
        return None
    cfg = dataset.get_run_info(prefix).config
    d = cfg.serialize()
    if d.get("ewc_type") != RUN_TYPE:
        return None
    return d


def save_run(dataset: fo.Dataset, prefix: str, record: dict, overwrite: bool = False) -> None:
    with schema_lock(dataset):
        config = dataset.init_run(ewc_type=RUN_TYPE, **record)
        if prefix in dataset.list_runs():
            dataset.update_run_config(prefix, config)
        else:
            dataset.register_run(prefix, config, overwrite=overwrite)


def owned_fields(dataset: fo.Dataset, prefix: str) -> list[str]:
    rec = get_run(dataset, prefix)
    return list(rec.get("fields", {}).values()) if rec else []


def delete_run(dataset: fo.Dataset, prefix: str, delete_files: bool = False) -> None:
    """Delete a run's fields, saved views, mask targets, sidebar group and record (never
    anything else); with ``delete_files`` also the files it wrote (:func:`delete_run_files`)."""
    with schema_lock(dataset):
        rec = get_run(dataset, prefix)
        if rec is None:
            return
        if delete_files:
            delete_run_files(dataset, rec)
        schema = dataset.get_field_schema()
        for f in rec.get("fields", {}).values():
            if f in schema:
                dataset.delete_sample_field(f)
        for v in rec.get("views", []):
            if dataset.has_saved_view(v):
                dataset.delete_saved_view(v)
        mt = dict(dataset.mask_targets)
        if mt.pop(f"{prefix}_mask", None) is not None:
            dataset.mask_targets = mt
            dataset.save()
        forget_run(dataset, prefix, list(rec.get("fields", {}).values()))
        dataset.delete_run(prefix)


def delete_run_files(dataset: fo.Dataset, record: dict) -> int:
    """Delete the files a run wrote: in its output directory's sub-folders, the files named
    after a sample of this dataset, and leftover temporary files. Anything else there (a
    file of yours, another dataset's) stays; emptied folders are removed. Returns the count."""
    out = record.get("output_dir")
    if not out or not os.path.isdir(out):
        return 0
    ids = set(dataset.values("id"))
    n = 0
    for sub in OUTPUT_SUBDIRS:
        d = os.path.join(out, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            m = _RUN_FILE.match(name)
            if name.startswith(TEMP_PREFIX) or (m and m.group(1) in ids):
                os.remove(os.path.join(d, name))
                n += 1
        _rmdir_if_empty(d)
    release_owner(dataset, out)
    _rmdir_if_empty(out)
    return n


def clean_temp_files(out_dir: str) -> int:
    """Remove temporary files a killed run left in ``out_dir`` (call holding the prefix claim)."""
    n = 0
    for sub in OUTPUT_SUBDIRS:
        d = os.path.join(out_dir, sub)
        if os.path.isdir(d):
            for name in os.listdir(d):
                if name.startswith(TEMP_PREFIX):
                    os.remove(os.path.join(d, name))
                    n += 1
    return n


def check_output_dir(dataset: fo.Dataset, prefix: str, out_dir: str) -> None:
    """Two runs writing one directory would overwrite each other's files (they are named by
    sample id): refuse a directory another prefix of this dataset uses."""
    for other in dataset.list_runs():
        if other == prefix:
            continue
        rec = get_run(dataset, other)
        if rec and os.path.abspath(rec.get("output_dir") or "") == out_dir:
            raise ConfigError(f"output directory {out_dir} holds the files of run {other!r}; "
                              "choose another --output-dir")


def _rmdir_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass

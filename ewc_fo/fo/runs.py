"""Run bookkeeping on a dataset: which fields a run owns, its configuration and status.

A run is registered as a FiftyOne custom run under its prefix (``dataset.get_run_info(P)``),
so every mask is traceable to the model, explainers, thresholds, segmenter and package
versions that made it. The run record is also how ewc-fo knows which fields are its own:
it never writes or deletes a field that no run of its own declared.
"""

from __future__ import annotations

import re
from importlib import metadata

import fiftyone as fo

from .prefix import PREFIX_RE, check_prefix  # noqa: F401 - the rule lives where the CLI can reach it light

RUN_TYPE = "ewc_fo.label"


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
    config = dataset.init_run(ewc_type=RUN_TYPE, **record)
    if prefix in dataset.list_runs():
        dataset.update_run_config(prefix, config)
    else:
        dataset.register_run(prefix, config, overwrite=overwrite)


def owned_fields(dataset: fo.Dataset, prefix: str) -> list[str]:
    rec = get_run(dataset, prefix)
    return list(rec.get("fields", {}).values()) if rec else []


def delete_run(dataset: fo.Dataset, prefix: str) -> None:
    """Delete a run's fields, saved views, mask targets and record (never anything else)."""
    rec = get_run(dataset, prefix)
    if rec is None:
        return
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
    dataset.delete_run(prefix)

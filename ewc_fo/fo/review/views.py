"""Triage views: the samples a reviewer should look at first.

Each view is also saved on the dataset (``dataset.load_saved_view(name)``) so it shows in
the App's view bar. Only samples the run labeled appear, worst first.
"""

from __future__ import annotations

import fiftyone as fo
from fiftyone import ViewField as F

from ewc_fo.runtime.errors import ConfigError

TRIAGE = {
    "low_confidence": "lowest confidence first: the masks least likely to be right",
    "low_agreement": "lowest explainer agreement first: the explainers disagree on these images",
    "map_mask_mismatch": "segmenter mask and fused map disagree most: least fused evidence inside the mask",
    "failed": "samples that could not be processed, with the reason in <prefix>_error",
    "to_review": "labeled samples nobody has accepted or rejected yet, lowest confidence first",
}

REVIEWED_TAG = "ewc:reviewed"
REJECT_TAG = "ewc:reject"


def triage_view(samples: fo.Dataset | fo.DatasetView, kind: str, prefix: str = "ewc") -> fo.DatasetView:
    """Return one triage view (``kind`` in :data:`TRIAGE`) of ``samples``."""
    conf, err = f"{prefix}_confidence", f"{prefix}_error"
    if conf not in samples.get_field_schema():
        raise ConfigError(f"no ewc-fo run with prefix {prefix!r} on this dataset")
    if kind == "low_confidence":
        return samples.exists(conf).sort_by(conf)
    if kind == "low_agreement":
        return samples.exists(conf).sort_by(f"{prefix}_agreement")
    if kind == "map_mask_mismatch":
        return samples.exists(conf).sort_by(f"{prefix}_mass_inside")
    if kind == "to_review":
        return samples.exists(conf).match_tags([REVIEWED_TAG, REJECT_TAG], bool=False).sort_by(conf)
    if kind == "failed":
        return samples.exists(err).sort_by(F(f"{prefix}_error_kind"))
    raise ConfigError(f"unknown triage view {kind!r}; one of {', '.join(TRIAGE)}")


def triage_views(samples, prefix: str = "ewc") -> dict[str, fo.DatasetView]:
    """All triage views by kind."""
    return {k: triage_view(samples, k, prefix) for k in TRIAGE}


def saved_view_name(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind.replace('_', '-')}"


def create_triage_views(dataset: fo.Dataset, prefix: str = "ewc") -> list[str]:
    """Save every triage view on the dataset; returns their names. Under the schema lock:
    two processes saving one name at once would otherwise both append it."""
    from ewc_fo.fo.runs.claims import schema_lock

    names = []
    with schema_lock(dataset):
        for kind, desc in TRIAGE.items():
            name = saved_view_name(prefix, kind)
            dataset.save_view(name, triage_view(dataset, kind, prefix), description=desc, overwrite=True)
            names.append(name)
    return names


def not_rejected(samples) -> fo.DatasetView:
    return samples.match_tags(REJECT_TAG, bool=False)

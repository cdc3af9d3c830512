"""What a label run reads and checks first: the image-level label field and its numbers."""

from __future__ import annotations

import fiftyone as fo

from ewc_fo.runtime.errors import ConfigError


def label_kind(view: fo.DatasetView | fo.Dataset, label_field: str) -> str:
    """Check ``label_field`` holds image-level labels; return "classification(s)"."""
    schema = view.get_field_schema()
    if label_field not in schema:
        cands = [k for k, v in schema.items() if _label_type(v) is not None]
        raise ConfigError(
            f"label field {label_field!r} not found; fields with image-level labels: "
            f"{', '.join(cands) or 'none'}"
        )
    kind = _label_type(schema[label_field])
    if kind is None:
        raise ConfigError(
            f"field {label_field!r} is a {type(schema[label_field]).__name__}; expected "
            "fo.Classification or fo.Classifications"
        )
    return kind


def _label_type(f) -> str | None:
    doc = getattr(f, "document_type", None)
    if doc is fo.Classification:
        return "classification"
    if doc is fo.Classifications:
        return "classifications"
    return None


def _read_labels(view, label_field: str, kind: str) -> list[list[str]]:
    """Each sample's class names. A ``Classification`` without a label is skipped; a sample
    left with none fails on its own (``no_label``) instead of sinking the run."""
    if kind == "classification":
        vals = view.values(f"{label_field}.label")
        return [[v] if isinstance(v, str) and v else [] for v in vals]
    vals = view.values(f"{label_field}.classifications.label")
    return [list(dict.fromkeys(c for c in v or [] if isinstance(c, str) and c)) for v in vals]


def _check_numbers(**kw) -> None:
    """Numeric arguments, checked before anything is declared (a bad one blocked the prefix)."""
    rules = {"batch_size": (1, True), "write_every": (1, True), "flush_seconds": (0, False),
             "max_samples": (0, True), "wait_s": (0, False)}
    for k, v in kw.items():
        if v is None:
            continue
        low, integer = rules[k]
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < low
        if integer and not bad:
            bad = int(v) != v
        if bad:
            raise ConfigError(f"{k} must be >= {low}{' (an integer)' if integer else ''}, got {v!r}")

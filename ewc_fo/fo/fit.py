"""Fit a classifier from a FiftyOne dataset's image-level labels.

Reads file paths and labels in two batch queries, detects single- vs multi-label from
the field type (``Classification`` vs ``Classifications``), and hands them to the
host-agnostic :func:`ewc_fo.models.fitting.fit_classifier`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import fiftyone as fo

from ewc_fo.fo.fitted import INFO_KEY, default_classifier, fitted_classifier, record_fitted  # noqa: F401
from ewc_fo.models.classifier import Classifier
from ewc_fo.models.fitting import DEFAULT_BACKBONE, fit_classifier
from ewc_fo.runtime.errors import ConfigError

ProgressFn = Callable[[int, int], None]


def read_labels(samples: fo.Dataset | fo.DatasetView, label_field: str) -> tuple[list[str], list, bool]:
    """File paths, labels (class name, list of names, or None) and whether multi-label.

    Samples whose field is unset give ``None`` (skipped by the fit); an empty
    ``Classifications`` is a real multi-label sample with no class present.
    """
    schema = samples.get_field_schema()
    if label_field not in schema:
        raise ConfigError(
            f"no field {label_field!r} on this dataset (fields: {', '.join(sorted(schema))})"
        )
    kind = getattr(schema[label_field], "document_type", None)
    if kind is fo.Classification:
        multilabel = False
        labels = samples.values(f"{label_field}.label")
    elif kind is fo.Classifications:
        multilabel = True
        present = samples.values(label_field)
        names = samples.values(f"{label_field}.classifications.label")
        labels = [None if p is None else list(n or []) for p, n in zip(present, names)]
    else:
        got = kind.__name__ if kind is not None else type(schema[label_field]).__name__
        raise ConfigError(
            f"field {label_field!r} holds {got}; fitting needs image-level labels: "
            "fo.Classification (single-label) or fo.Classifications (multi-label)"
        )
    paths = samples.values("filepath")
    if all(lab is None for lab in labels):
        raise ConfigError(f"no labels: field {label_field!r} is empty on all {len(paths)} samples")
    return paths, labels, multilabel


def fit(
    samples: fo.Dataset | fo.DatasetView,
    label_field: str,
    out: str | os.PathLike | None = None,
    backbone: str = DEFAULT_BACKBONE,
    progress: ProgressFn | None = None,
    **kwargs,
) -> Classifier:
    """Fit a classifier on ``samples``' labels in ``label_field``; save it to ``out`` if given.

    ``kwargs`` go to :func:`~ewc_fo.models.fitting.fit_classifier` (``head``,
    ``finetune_blocks``, ``fit_size``, ``input_size``, ``holdout``, ``cache_dir``, ...).
    The held-out score is in ``clf.meta["heldout_score"]`` and the checkpoint's JSON; classes
    it does not cover (a single image: fitted, never held out) are in ``clf.meta["not_scored"]``.
    ``progress(done, total)`` is called as images are passed (the plugin reports it to the App).
    """
    paths, labels, multilabel = read_labels(samples, label_field)
    clf = fit_classifier(paths, labels, backbone=backbone, multilabel=multilabel, progress=progress, **kwargs)
    clf.meta["dataset"] = getattr(samples, "dataset_name", None) or samples.name
    clf.meta["label_field"] = label_field
    if out is not None:
        from ewc_fo.models.checkpoint import save_checkpoint

        save_checkpoint(clf, out)
        record_fitted(samples._dataset, out, label_field)
    return clf

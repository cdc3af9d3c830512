"""Record an ewc-fo evaluation as a FiftyOne segmentation evaluation run.

``ewc_fo.fo.review.evaluate`` measures in its own streamed pass (class ids mapped by name, void
pixels ignored, confidence checked against IoU). This module hands the outcome to FiftyOne's
own evaluation machinery so that ``dataset.list_evaluations()``, ``load_evaluation_results()``,
``results.print_report()`` / ``plot_confusion_matrix()`` and the App's Model Evaluation panel
all see it: the run is a ``SimpleEvaluationConfig`` run (the "simple" segmentation method),
its results a ``SegmentationResults`` carrying our pixel confusion matrix, per-sample matches
(so clicking a confusion-matrix cell in the panel selects the samples), our headline numbers
as ``custom_metrics`` (shown by the panel) and the full report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import fiftyone as fo
import numpy as np
from fiftyone.utils.eval.segmentation import SegmentationResults, SimpleEvaluationConfig

from ewc_fo.fo.runs.claims import schema_lock
from ewc_fo.runtime.errors import ConfigError

#: name of the extra class that holds predicted ids the ground truth does not name
OTHER = "(other)"


class EWCSegmentationResults(SegmentationResults):
    """``SegmentationResults`` that also keep the ewc-fo report as ``ewc_report``
    (``EvaluationReport.to_dict()``; not ``report``, a method of FiftyOne's results).

    Stored and reloaded by FiftyOne like any evaluation result; a process without ewc_fo
    falls back to plain ``SegmentationResults`` and simply loses ``ewc_report``.
    """

    def __init__(self, *args, ewc_report: Mapping | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ewc_report = dict(ewc_report) if ewc_report else None

    def attributes(self) -> list[str]:
        return super().attributes() + ["ewc_report"]

    @classmethod
    def _from_dict(cls, d, samples, config, eval_key, **kwargs):
        results = super()._from_dict(d, samples, config, eval_key, **kwargs)
        results.ewc_report = d.get("ewc_report")
        return results


class SampleConfusion:
    """Collects what FiftyOne records per sample (matches, accuracy/precision/recall)."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.classes = list(class_names) + [OTHER]
        self.matches: list[tuple] = []
        self.per_sample: dict[str, tuple] = {}

    def add(self, sample_id: str, matrix: np.ndarray, gt_id: str | None, pred_id: str | None) -> None:
        """``matrix`` is one sample's ``ConfusionMatrix.matrix`` (C rows, C+1 columns)."""
        sq = _square(matrix)
        for i, j in zip(*np.nonzero(sq), strict=True):
            self.matches.append((self.classes[i], self.classes[j], int(sq[i, j]), gt_id, pred_id))
        # FiftyOne's per-sample metrics (micro average, background as "missing"), on the
        # classes present: absent ones add nothing and would only slow sklearn down
        idx = sorted({0, *np.nonzero(sq.any(axis=0) | sq.any(axis=1))[0].tolist()})
        sub = sq[np.ix_(idx, idx)]
        m = SegmentationResults(None, None, None, sub, [self.classes[i] for i in idx], missing=self.classes[0]).metrics(
            average="micro"
        )
        self.per_sample[sample_id] = (
            (None, None, None) if not m["support"] else (m["accuracy"], m["precision"], m["recall"])
        )


def check_run(view: fo.Dataset | fo.DatasetView, eval_key: str, pred_field: str, gt_field: str) -> None:
    """Fail before any work when ``eval_key`` holds another kind of run or other fields."""
    try:
        SimpleEvaluationConfig(pred_field, gt_field).build().validate_run(view, eval_key)
    except ValueError as e:
        raise ConfigError(f"cannot record evaluation {eval_key!r}: {e}; pass another eval key") from e


def record_run(
    view: fo.Dataset | fo.DatasetView,
    eval_key: str,
    pred_field: str,
    gt_field: str,
    matrix: np.ndarray,
    confusion: SampleConfusion,
    report: Mapping,
    *,
    named: bool = True,
    chunk_size: int = 512,
) -> EWCSegmentationResults:
    """Register ``eval_key`` on ``view``'s dataset and save its results (replacing an older
    run under the same key for the same fields, as FiftyOne's ``evaluate_segmentations`` does).

    ``matrix`` is the data set's ``ConfusionMatrix.matrix``; with ``named`` False (nobody named
    the class ids) only the classes that occurred are kept, as in the report.
    """
    config = SimpleEvaluationConfig(pred_field, gt_field)
    method = config.build()
    # the run and its fields live in the dataset document: under the schema lock, the
    # per-sample values outside it (voxel51/fiftyone#3185, ewc_fo.fo.runs.claims)
    with schema_lock(view._dataset):
        try:
            method.register_run(view, eval_key)
        except ValueError as e:
            raise ConfigError(f"cannot record evaluation {eval_key!r}: {e}; pass another eval key") from e
        method.register_samples(view, eval_key)  # adds <key>_accuracy/_precision/_recall
    fields = [f"{eval_key}_{m}" for m in ("accuracy", "precision", "recall")]
    items = list(confusion.per_sample.items())
    for k, name in enumerate(fields):
        for i in range(0, len(items), chunk_size):
            chunk = items[i : i + chunk_size]
            view.set_values(name, {sid: v[k] for sid, v in chunk}, key_field="id")

    classes = confusion.classes
    sq = _square(matrix)
    seen = sq.any(axis=0) | sq.any(axis=1)
    keep = [i for i in range(len(classes)) if i == 0 or seen[i] or (named and i < len(classes) - 1)]
    kept = {classes[i] for i in keep}
    results = EWCSegmentationResults(
        view,
        config,
        eval_key,
        sq[np.ix_(keep, keep)],
        [classes[i] for i in keep],
        matches=[m for m in confusion.matches if m[0] in kept and m[1] in kept],
        missing=classes[0],
        custom_metrics=_custom_metrics(report),
        backend=method,
        ewc_report=report,
    )
    with schema_lock(view._dataset):
        method.save_run_results(view, eval_key, results)
        method.add_fields_to_sidebar_group(view, eval_key, omit_fields=(pred_field, gt_field))
    return results


def _square(matrix: np.ndarray) -> np.ndarray:
    """C x (C+1) (last column: ids outside the classes) -> (C+1) x (C+1), as FiftyOne wants."""
    c = matrix.shape[0]
    sq = np.zeros((c + 1, c + 1), dtype=np.int64)
    sq[:c, :] = matrix
    return sq


def _custom_metrics(report: Mapping) -> dict:
    """The report's headline numbers in FiftyOne's ``custom_metrics`` shape (the panel lists them)."""
    out = {}

    def put(key: str, label: str, value) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        out[f"ewc_fo/{key}"] = {"key": key, "value": float(value), "label": label, "lower_is_better": False}

    put("miou", "mIoU", report.get("miou"))
    put("mean_sample_iou", "mean per-sample IoU", report.get("mean_sample_iou"))
    put("pixel_accuracy", "pixel accuracy (void ignored)", report.get("pixel_accuracy"))
    for field, s in (report.get("confidence") or {}).items():
        put(f"{field}_auroc", f"{field}: AUROC at finding bad masks", s.get("auroc"))
        put(f"{field}_spearman", f"{field}: Spearman vs sample IoU", s.get("spearman"))
    return out

"""Score a run's masks against ground-truth masks in FiftyOne, and check its confidence.

Answers two questions with one streamed pass over a view: how good are the pseudo-masks
(mIoU over the accumulated confusion matrix, VOC style, background included, 255 ignored),
and does ``P_confidence`` find the bad ones (Spearman, AUROC, recall at 20 % reviewed)?
The per-sample IoU is written to ``P_iou`` so the App can sort by it; the result is recorded
as a FiftyOne segmentation evaluation run (key ``P_eval`` by default, ``ewc_fo.fo.review.eval_run``),
so ``dataset.list_evaluations()``, ``load_evaluation_results()`` and the App's Model
Evaluation panel see it. Definitions: docs/evaluation.md.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import fiftyone as fo
import numpy as np

from ewc_fo import metrics
from ewc_fo.fo.review.eval_masks import (
    apply_lut,
    class_mapping,
    is_segmentation,
    nan_to_none,
    none_to_nan,
    num,
    pct,
    read_mask,
    recall_key,
    resize_nearest,
)
from ewc_fo.fo.review.eval_run import SampleConfusion, check_run, record_run
from ewc_fo.fo.runs.claims import schema_lock
from ewc_fo.runtime.errors import ConfigError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class EvaluationReport:
    """Everything one evaluation measured; ``to_markdown()`` for people, ``to_dict()`` for storage."""

    pred_field: str
    gt_field: str
    miou: float
    pixel_accuracy: float
    per_class_iou: dict[str, float]
    n_samples: int
    mean_sample_iou: float = math.nan
    iou_field: str | None = None
    ignore_index: int | None = 255
    n_skipped: dict[str, int] = field(default_factory=dict)
    #: per confidence field: {"spearman", "auroc", "recall_at_20", "n"}
    confidence: dict[str, dict[str, float]] = field(default_factory=dict)
    iou_threshold: float = 0.5
    review_fraction: float = 0.2
    n_resized: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON/BSON-safe dict (NaN becomes None, so the App can serialise it)."""
        return nan_to_none(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> EvaluationReport:
        d = none_to_nan(dict(d))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_markdown(self) -> str:
        lines = [
            f"## Evaluation of `{self.pred_field}` against `{self.gt_field}`",
            "",
            "| metric | value |",
            "|---|---|",
            f"| mIoU (%) | {pct(self.miou)} |",
            f"| pixel accuracy (%) | {pct(self.pixel_accuracy)} |",
            f"| mean per-sample IoU (%) | {pct(self.mean_sample_iou)} |",
            f"| samples evaluated | {self.n_samples} |",
        ]
        for why, n in sorted(self.n_skipped.items()):
            if n:
                lines.append(f"| skipped ({why.replace('_', ' ')}) | {n} |")
        lines += ["", "| class | IoU (%) |", "|---|---|"]
        lines += [f"| {name} | {pct(v)} |" for name, v in self.per_class_iou.items()]
        if self.confidence:
            rk = recall_key(self.review_fraction)
            lines += [
                "",
                f"Confidence vs per-sample IoU (bad = IoU < {self.iou_threshold:g}):",
                "",
                f"| field | n | Spearman | AUROC (bad) | recall of bad @ {self.review_fraction:.0%} reviewed (%) |",
                "|---|---|---|---|---|",
            ]
            for name, s in self.confidence.items():
                lines.append(
                    f"| {name} | {int(s.get('n', 0))} | {num(s.get('spearman'))} | "
                    f"{num(s.get('auroc'))} | {pct(s.get(rk))} |"
                )
        if self.warnings:
            lines += ["", "Warnings:", ""] + [f"- {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()


def evaluate(
    view: fo.Dataset | fo.DatasetView,
    pred_field: str = "ewc_mask",
    gt_field: str = "ground_truth",
    *,
    num_classes: int | None = None,
    names: Sequence[str] | Mapping[int, str] | None = None,
    ignore_index: int | None = 255,
    sample_iou_field: str | None = None,
    confidence_fields: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
    review_fraction: float = 0.2,
    store: bool = True,
    eval_key: str | None = None,
    progress: bool | ProgressFn | None = None,
    chunk_size: int = 512,
) -> EvaluationReport:
    """Evaluate ``pred_field`` masks against ``gt_field`` masks over ``view``.

    Class ids follow the ground truth: ``names`` / ``num_classes`` if given, else
    ``mask_targets[gt_field]`` or the dataset's default mask targets. Predicted ids are mapped
    onto them by class name through ``mask_targets[pred_field]`` (0 stays background); without
    targets, ids are taken as the same. With ``prefix`` = ``pred_field`` minus ``_mask``:
    per-sample IoU goes to ``sample_iou_field`` (default ``{prefix}_iou``; ``""`` to skip),
    confidence fields default to ``{prefix}_confidence`` and ``{prefix}_agreement`` (those
    that exist), and with ``store`` the evaluation is recorded as FiftyOne evaluation run
    ``eval_key`` (default ``{prefix}_eval``; it also writes ``{eval_key}_accuracy``,
    ``_precision`` and ``_recall`` per sample, as FiftyOne's segmentation evaluation does).
    """
    dataset = view._dataset
    schema = view.get_field_schema()
    for f in (pred_field, gt_field):
        if f not in schema:
            raise ConfigError(f"field {f!r} not found on dataset {dataset.name!r}")
        if not is_segmentation(schema[f]):
            raise ConfigError(f"field {f!r} is not a fo.Segmentation field")
    prefix = pred_field[: -len("_mask")] if pred_field.endswith("_mask") and len(pred_field) > 5 else pred_field
    iou_field = f"{prefix}_iou" if sample_iou_field is None else (sample_iou_field or None)
    if confidence_fields is None:
        confidence_fields = [f for f in (f"{prefix}_confidence", f"{prefix}_agreement") if f in schema]
    else:
        missing = [f for f in confidence_fields if f not in schema]
        if missing:
            raise ConfigError(f"confidence field(s) {missing} not found")
    confidence_fields = list(confidence_fields)
    if iou_field and iou_field in {pred_field, gt_field, *confidence_fields}:
        raise ConfigError(f"sample_iou_field {iou_field!r} would overwrite an input field")
    if iou_field and iou_field in schema and not isinstance(schema[iou_field], fo.FloatField):
        raise ConfigError(f"field {iou_field!r} exists and is not a float field; pass another sample_iou_field")
    eval_key = eval_key or f"{prefix}_eval"
    if store:
        _check_eval_key(dataset, eval_key, {pred_field, gt_field, iou_field, *confidence_fields}, schema)
        check_run(view, eval_key, pred_field, gt_field)

    warn: list[str] = []
    class_names, lut, named = class_mapping(dataset, pred_field, gt_field, num_classes, names, ignore_index, warn)
    c = len(class_names)
    cm = metrics.ConfusionMatrix(c, ignore_index)
    per_sample = SampleConfusion(class_names)

    samples = view.select_fields([pred_field, gt_field, *confidence_fields])
    total = len(samples)
    skipped = {"missing_pred": 0, "missing_gt": 0, "unreadable": 0, "shape_mismatch": 0}
    ious: dict[str, float | None] = {}
    conf: dict[str, list[float]] = {f: [] for f in confidence_fields}
    sample_vals: list[float] = []
    n_resized, done = 0, 0
    fo_progress = progress if isinstance(progress, bool) else None
    callback = progress if callable(progress) else None

    for sample in samples.iter_samples(progress=fo_progress):
        done += 1
        if callback is not None and (done % 64 == 0 or done == total):
            callback(done, total)
        ious[sample.id] = None
        pred_label, gt_label = sample[pred_field], sample[gt_field]
        if gt_label is None:
            skipped["missing_gt"] += 1
            continue
        if pred_label is None:
            skipped["missing_pred"] += 1
            continue
        try:
            gt = read_mask(gt_label)
            pred = read_mask(pred_label)
        except (OSError, ValueError) as e:
            skipped["unreadable"] += 1
            if skipped["unreadable"] <= 3:
                warn.append(f"sample {sample.id}: {e}")
            continue
        if gt is None or pred is None:
            skipped["missing_gt" if gt is None else "missing_pred"] += 1
            continue
        if pred.ndim != 2 or gt.ndim != 2:
            skipped["shape_mismatch"] += 1
            continue
        if pred.shape != gt.shape:
            pred = resize_nearest(pred, gt.shape)
            n_resized += 1
        pred = apply_lut(pred, lut, c)
        try:
            one = metrics.ConfusionMatrix(c, ignore_index).update(pred, gt)
        except ValueError as e:
            raise ConfigError(f"sample {sample.id}: {e}; pass num_classes/names or fix mask_targets") from e
        cm += one
        if store:
            per_sample.add(sample.id, one.matrix, gt_label.id, pred_label.id)
        v = one.miou()  # = metrics.sample_iou(pred, gt, c, ignore_index), one bincount
        if math.isnan(v):
            continue
        ious[sample.id] = v
        sample_vals.append(v)
        for f in confidence_fields:
            x = sample[f]
            conf[f].append(float(x) if isinstance(x, int | float) else math.nan)

    if iou_field:
        if iou_field not in schema:
            with schema_lock(dataset):  # another process may be declaring fields too
                if iou_field not in dataset.get_field_schema():
                    dataset.add_sample_field(iou_field, fo.FloatField)
        items = list(ious.items())
        for i in range(0, len(items), chunk_size):
            view.set_values(iou_field, dict(items[i : i + chunk_size]), key_field="id")

    if n_resized:
        warn.append(f"{n_resized} predicted mask(s) had another size than the ground truth; resized (nearest)")
    if skipped["shape_mismatch"]:
        warn.append(f"{skipped['shape_mismatch']} mask(s) were not 2-D label maps and were skipped")

    iou_arr = np.asarray(sample_vals, dtype=np.float64)
    conf_stats = {}
    for f in confidence_fields:
        x = np.asarray(conf[f], dtype=np.float64)
        conf_stats[f] = {
            "n": int(np.isfinite(x).sum()),
            "spearman": metrics.spearman(x, iou_arr),
            "auroc": metrics.auroc_bad(x, iou_arr, iou_threshold),
            recall_key(review_fraction): metrics.recall_at_fraction(x, iou_arr, review_fraction, iou_threshold),
        }

    per_class = cm.per_class_dict(class_names)
    if not named:  # ids nobody named: list only the classes that occurred
        per_class = {k: v for k, v in per_class.items() if not math.isnan(v)}
    report = EvaluationReport(
        pred_field=pred_field,
        gt_field=gt_field,
        miou=cm.miou(),
        pixel_accuracy=cm.pixel_accuracy(),
        per_class_iou=per_class,
        n_samples=len(sample_vals),
        mean_sample_iou=float(iou_arr.mean()) if iou_arr.size else math.nan,
        iou_field=iou_field,
        ignore_index=ignore_index,
        n_skipped=skipped,
        confidence=conf_stats,
        iou_threshold=iou_threshold,
        review_fraction=review_fraction,
        n_resized=n_resized,
        warnings=warn,
    )
    if store:
        record_run(view, eval_key, pred_field, gt_field, cm.matrix, per_sample, report.to_dict(),
                   named=named, chunk_size=chunk_size)
    return report


def load_report(dataset: fo.Dataset, prefix: str = "ewc", eval_key: str | None = None) -> EvaluationReport | None:
    """The report of evaluation run ``eval_key`` (default ``{prefix}_eval``), or None.

    Falls back to ``dataset.info["{prefix}_evaluation"]``, where older versions kept it.
    """
    key = eval_key or f"{prefix}_eval"
    if key in dataset.list_evaluations():
        results = dataset.load_evaluation_results(key)
        d = getattr(results, "ewc_report", None)
        if d:
            return EvaluationReport.from_dict(d)
    d = dataset.info.get(f"{prefix}_evaluation")
    return EvaluationReport.from_dict(d) if d else None


def _check_eval_key(dataset: fo.Dataset, key: str, inputs: set, schema) -> None:
    """Refuse a key whose per-sample fields would overwrite an input or a user's field."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key):
        raise ConfigError(f"eval key {key!r} must start with a letter and use only letters, digits, _")
    ours = key in dataset.list_evaluations()
    for suffix in ("accuracy", "precision", "recall"):
        f = f"{key}_{suffix}"
        if f in inputs or (f in schema and not ours):
            raise ConfigError(f"eval key {key!r} would overwrite field {f!r}; pass another eval key")


# ---------------------------------------------------------------------------- helpers



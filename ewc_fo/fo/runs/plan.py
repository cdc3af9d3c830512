"""Everything a label run decides before its first batch, shared by every executor (in-process,
Ray): the checks, the declared fields, the run record, the batches; and the run's end."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import fiftyone as fo

from ewc_fo.engine.pipeline import EWC, EWCConfig
from ewc_fo.fo.review.app_config import configure_app
from ewc_fo.fo.review.views import create_triage_views
from ewc_fo.fo.runs import record as runs
from ewc_fo.fo.runs.claims import schema_lock
from ewc_fo.fo.runs.label_inputs import _check_numbers, _read_labels, label_kind
from ewc_fo.fo.runs.outcome import LabelSummary
from ewc_fo.fo.runs.output_dir import check_owner, default_output_dir, mark_owner
from ewc_fo.models.classifier import Classifier
from ewc_fo.models.registry import load_classifier
from ewc_fo.runtime.budget import Limits
from ewc_fo.runtime.errors import AlreadyLabeledError, ConfigError, UnknownClassError
from ewc_fo.segmenters import Segmenter, create_segmenter

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """Everything a run decided before its first batch: shared by every executor
    (in-process here, a Ray cluster in ``ewc_fo.distributed``) so they label the same batches."""

    samples: fo.Dataset | fo.DatasetView
    dataset: fo.Dataset
    label_field: str
    kind: str
    prefix: str
    ewc: EWC
    clf: Classifier
    names: dict[str, str]
    exp_keys: list[str]
    target_id: dict[str, int]
    out_dir: str
    batch_size: int
    record: dict
    all_ids: list[str]
    todo: set[str]
    summary: LabelSummary

    def batches(self, budget: int):
        """Yield ``(chunk, missing)`` at fixed positions of the whole view, stopping once
        ``budget`` samples are planned. A batch with any unfinished sample is recomputed
        whole, so a resumed run sees exactly the batches an uninterrupted run saw (batch
        composition changes conv arithmetic in the last bits) and writes only what is missing."""
        planned = 0
        for start in range(0, len(self.all_ids), self.batch_size):
            if planned >= budget:
                return
            chunk = self.all_ids[start:start + self.batch_size]
            missing = [i for i in chunk if i in self.todo]
            if missing:
                planned += len(missing)
                yield chunk, missing

    def inputs(self, chunk: list[str]) -> tuple[list[str], list[list[str]]]:
        """File paths and image-level labels of a batch, in ``chunk`` order."""
        batch = self.samples.select(chunk, ordered=True)
        return batch.values("filepath"), _read_labels(batch, self.label_field, self.kind)


def prepare_run(
    samples: fo.Dataset | fo.DatasetView,
    label_field: str,
    *,
    prefix: str,
    classifier: str | Classifier,
    segmenter: str | Segmenter,
    sam2_checkpoint: str | None,
    config: EWCConfig | None,
    batch_size: int | None,
    overwrite: bool,
    output_dir: str | None,
    limits: Limits | None = None,
    engine=None,
) -> RunPlan:
    """Check ownership and settings, declare every output field and save the run record:
    all schema changes happen here, before any batch runs (concurrent field additions
    race in FiftyOne, voxel51/fiftyone#3185).

    ``engine``: anything with EWC's ``run``/``describe``/``explainers``/``clf`` to label with
    instead of EWC (a trained segmentation model, ``engine/seg_labeler.py``)."""
    runs.check_prefix(prefix)
    _check_numbers(batch_size=batch_size)
    dataset = samples._root_dataset if isinstance(samples, fo.DatasetView) else samples
    # not len(): on a whole dataset it is MongoDB's estimated count, 0 after a database crash
    if not samples.limit(1).values("id"):
        raise ConfigError("the view is empty: nothing to label")
    kind = label_kind(samples, label_field)
    if label_field.startswith(f"{prefix}_"):
        raise ConfigError(f"label field {label_field!r} uses the run prefix {prefix!r}; pick another prefix")

    if engine is not None:
        ewc, clf, cfg, engine_name = engine, engine.clf, EWCConfig(), engine.name
    else:
        clf = classifier if isinstance(classifier, Classifier) else load_classifier(classifier)
        cfg = config or EWCConfig()
        seg = segmenter if isinstance(segmenter, Segmenter) else create_segmenter(segmenter, checkpoint=sam2_checkpoint)
        ewc, engine_name = EWC(clf, seg, cfg, limits), seg.name
    if engine is None and (cfg.objectness or cfg.objectness_labels
                           or (ewc.proposal_grid and ewc.config.proposal_objectness)):
        from ewc_fo.models.objectness import require_objectness

        require_objectness()  # fetched, or a clear error, before any field is declared
    exp_keys = [e.key for e in ewc.explainers]
    names = runs.field_names(prefix, exp_keys)
    dataset.reload()
    record = runs.get_run(dataset, prefix)
    # a run that never got past declaring its fields, or one --overwrite replaces: its
    # fields are ours to clear (after the checks below)
    stale = record if record is not None and (overwrite or record.get("status") == runs.DECLARING) else None
    owned = set(record["fields"].values()) if record is not None else set()
    if stale is not None:
        record = None
    schema = dataset.get_field_schema()
    clash = [f for f in names.values() if f in schema and f not in owned]
    if clash:
        raise ConfigError(
            f"fields {', '.join(clash)} exist and were not written by an ewc-fo run with prefix "
            f"{prefix!r}; choose another --prefix (ewc-fo never overwrites your fields)"
        )
    described = ewc.describe()
    if record is not None:
        if record.get("status") == "complete" and not _has_todo(samples, names):
            raise AlreadyLabeledError(
                f"run {prefix!r} already labeled this view; use --overwrite to redo it or another --prefix"
            )
        if record.get("method") != _comparable(described) or record.get("label_field") != label_field:
            raise ConfigError(
                f"run {prefix!r} exists with different settings; resume with the same settings, "
                "or use --overwrite to start again, or another --prefix"
            )

    # ---- classes: the union of labels in the view, all known to the classifier
    all_labels = _read_labels(samples, label_field, kind)
    classes = sorted({c for cs in all_labels for c in cs})
    known = [c for c in classes if c in clf._index]
    if classes and not known:
        raise UnknownClassError(
            f"none of the view's classes ({', '.join(classes[:6])}...) is known to classifier "
            f"{clf.name!r}; fit one on your labels first: ewc-fo fit"
        )
    out_dir = os.path.abspath(output_dir or (record or {}).get("output_dir") or default_output_dir(dataset, prefix))
    runs.check_output_dir(dataset, prefix, out_dir)
    check_owner(dataset, prefix, out_dir)  # another dataset's run (another database?) wrote there
    _make_output_dirs(out_dir)  # a file in the way or no permission: one clear line, before any write
    batch_size = int(batch_size if batch_size is not None else (record or {}).get("batch_size") or 4)

    # ---- writes, from here on
    with schema_lock(dataset):
        if stale is not None:
            runs.delete_run(dataset, prefix, delete_files=True)
        mask_targets = dict(dataset.mask_targets.get(names["mask"], {})) if record else {}
        for c in known:
            if c not in mask_targets.values():
                mask_targets[(max(mask_targets) if mask_targets else 0) + 1] = c
        new = {
            "batch_size": batch_size,
            "label_field": label_field, "fields": names, "output_dir": out_dir, "status": runs.DECLARING,
            "method": _comparable(described), "segmenter": described["segmenter"], "versions": runs.versions(),
            "views": (record or {}).get("views", []),
        }
        if record is None:
            runs.save_run(dataset, prefix, new)  # first: the fields below are then known as ours
            _declare_fields(dataset, names)
        dataset.mask_targets = {**dataset.mask_targets, names["mask"]: mask_targets}
        dataset.save()
        new["status"] = "running"
        runs.save_run(dataset, prefix, new)
    removed = runs.clean_temp_files(out_dir)
    if removed:
        log.info("removed %d temporary files a killed run of %r left behind", removed, prefix)
    _make_output_dirs(out_dir)  # again: clearing the replaced run removes emptied folders
    mark_owner(dataset, prefix, out_dir)
    record = new
    target_id = {v: k for k, v in mask_targets.items()}

    all_ids = samples.values("id")
    todo = set(samples.exists(names["confidence"], False).exists(names["error"], False).values("id"))
    summary = LabelSummary(prefix=prefix, total=len(all_ids), skipped_done=len(all_ids) - len(todo),
                           segmenter=engine_name, output_dir=out_dir)
    return RunPlan(samples=samples, dataset=dataset, label_field=label_field, kind=kind, prefix=prefix,
                   ewc=ewc, clf=clf, names=names, exp_keys=exp_keys, target_id=target_id,
                   out_dir=out_dir, batch_size=batch_size, record=record, all_ids=all_ids, todo=todo,
                   summary=summary)


def finish_run(plan: RunPlan) -> None:
    """Mark the run complete (and make its triage views) once no sample is left unmarked,
    and set the App's config: all in the dataset document, so under the schema lock.
    Then clear the temporary files of writers that died."""
    with schema_lock(plan.dataset):
        if not _has_todo(plan.samples, plan.names):
            plan.summary.views = create_triage_views(plan.dataset, plan.prefix)
            plan.record["views"] = plan.summary.views
            plan.record["status"] = "complete"
        runs.save_run(plan.dataset, plan.prefix, plan.record)
        configure_app(plan.dataset, plan.prefix, plan.label_field, list(plan.names.values()))
    # every writer of this run has stopped (the claim is still held): what a worker killed
    # mid-write left (a Ray node lost, its batch redone elsewhere) goes now, not at the next run
    removed = runs.clean_temp_files(plan.out_dir)
    if removed:
        log.info("removed %d temporary files a lost worker of %r left behind", removed, plan.prefix)


def _make_output_dirs(out_dir: str) -> None:
    try:
        for sub in runs.OUTPUT_SUBDIRS:
            os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    except OSError as e:
        raise ConfigError(f"output folder {out_dir} cannot be used: {e.strerror or e}") from None


def _comparable(described: dict) -> dict:
    """The part of a run's description that must match to resume it (JSON-normalised,
    as it comes back from the database). A quantized segmenter counts as another one
    (``sam-onnx/int8``): its masks differ; fp32 keeps the bare name earlier runs recorded."""
    seg = described["segmenter"]
    precision = seg.get("precision")
    name = seg["name"] if precision in (None, "fp32") else f"{seg['name']}/{precision}"
    return json.loads(json.dumps({"classifier": described["classifier"], "explainers": described["explainers"],
            "config": described["config"], "segmenter": name}))


def _has_todo(samples, names) -> bool:
    return len(samples.exists(names["confidence"], False).exists(names["error"], False)) > 0


def _declare_fields(dataset: fo.Dataset, names: dict[str, str]) -> None:
    """Declare the run's fields up front so the App shows them with the right types."""
    schema = dataset.get_field_schema()

    def add(name, ftype, **kw):
        if name not in schema:
            dataset.add_sample_field(name, ftype, **kw)

    add(names["mask"], fo.EmbeddedDocumentField, embedded_doc_type=fo.Segmentation)
    add(names["instances"], fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    for k, v in names.items():
        if k.startswith("heatmap_"):
            add(v, fo.EmbeddedDocumentField, embedded_doc_type=fo.Heatmap)
    add(names["classes"], fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
    for k in ("confidence", "agreement", "mass_inside"):
        add(names[k], fo.FloatField)
    for k in ("class_confidence", "scores"):
        add(names[k], fo.DictField)
    for k in ("maps_path", "error", "error_kind"):
        add(names[k], fo.StringField)

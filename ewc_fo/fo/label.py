"""Pseudo-label a FiftyOne dataset or view with EWC: streamed, batched, resumable.

What a run writes is listed in docs/fields.md. How it stays safe:

- it only writes fields declared in its own run record (prefix ``P``); a field named
  like one of them that the run did not create stops the run before any work;
- files (masks, heatmaps, maps) are written first, atomically (temp file + rename);
  then the sample fields are written in batches with ``set_values``, and the field that
  marks a sample as finished (``P_confidence`` or ``P_error``) is written last. A run
  killed at any point (SIGKILL included) leaves every sample either finished or
  unmarked; the next run picks up exactly the unmarked ones and, being deterministic,
  ends with the result an uninterrupted run would have given;
- one process at a time runs a prefix on a dataset (a renewed lease in the database,
  ``claims.claim_prefix``), and changes to the dataset document go through
  ``claims.schema_lock`` so concurrent runs with other prefixes keep every field
  (docs/concurrency.md);
- its record is saved (status ``declaring``) before its fields are added, so a run killed
  in between never leaves fields no run owns.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import fiftyone as fo
from pymongo.errors import ConnectionFailure

from ..engine.budget import Limits
from ..engine.classifier import Classifier, load_classifier
from ..engine.errors import ConfigError, DatabaseUnavailableError, UnknownClassError
from ..engine.loading import load_batches
from ..engine.pipeline import EWC, EWCConfig
from ..engine.segmenters import Segmenter, create_segmenter
from . import runs
from .app_config import configure_app
from .claims import claim_prefix, schema_lock
from .database import down_message
from .sample_values import flush, process_batch
from .views import create_triage_views

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class LabelSummary:
    """What a run did: counts by outcome, errors by kind, time, and the triage views."""

    prefix: str
    total: int
    processed: int = 0
    succeeded: int = 0
    skipped_done: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    write_seconds: float = 0.0
    views: list[str] = field(default_factory=list)
    segmenter: str = ""
    output_dir: str = ""

    def __str__(self) -> str:
        lines = [
            f"ewc-fo run '{self.prefix}' ({self.segmenter}): {self.succeeded} labeled, "
            f"{sum(self.errors.values())} failed, {self.skipped_done} already done, "
            f"of {self.total} samples in {self.seconds:.1f}s",
        ]
        for kind, n in sorted(self.errors.items()):
            lines.append(f"  failed ({kind}): {n}")
        if self.views:
            lines.append("  triage views: " + ", ".join(self.views))
        return "\n".join(lines)


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


def default_output_dir(dataset: fo.Dataset, prefix: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset.name)
    return os.path.join(fo.config.default_dataset_dir, "ewc_fo", name, prefix)


@dataclass
class RunPlan:
    """Everything a run decided before its first batch: shared by every executor
    (in-process here, a Ray cluster in ``ewc_fo.dist``) so they label the same batches."""

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


def label(
    samples: fo.Dataset | fo.DatasetView,
    label_field: str,
    *,
    prefix: str = "ewc",
    classifier: str | Classifier = "efficientnet_lite0",
    segmenter: str | Segmenter = "auto",
    sam2_checkpoint: str | None = None,
    config: EWCConfig | None = None,
    batch_size: int | None = None,
    write_every: int = 32,
    flush_seconds: float = 10.0,
    overwrite: bool = False,
    output_dir: str | None = None,
    progress: ProgressFn | None = None,
    progress_bar: bool = True,
    max_samples: int | None = None,
    limits: Limits | None = None,
    loader_workers: int | None = None,
    ray_address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    threads_per_worker: int | None = None,
    wait_s: float = 0.0,
) -> LabelSummary:
    """Run EWC on every sample of ``samples`` that this run has not finished yet.

    Args:
        samples: a dataset or view whose ``label_field`` holds image-level labels.
        prefix: names every field the run writes; two prefixes can coexist.
        classifier: a :class:`Classifier`, a name (``efficientnet_lite0``,
            ``torchvision:resnet50``, ``timm:...``) or a checkpoint from ``ewc-fo fit``.
        segmenter: ``"sam2"``, ``"grabcut"``, ``"auto"`` (SAM2 if a checkpoint is known) or an instance.
        overwrite: delete this prefix's previous run (its fields, files and views) first;
            without it, a finished run with the same prefix is an error and an
            unfinished one is resumed.
        progress: ``progress(done, total)`` after every batch (the plugin uses it).
        write_every, flush_seconds: results reach the database every ``write_every``
            samples or ``flush_seconds`` seconds, whichever comes first.
        max_samples: stop after this many samples in this call (the rest stays to resume).
        limits: per-sample time budget, class chunking, max classes (:class:`Limits`).
        batch_size: images per forward/backward pass (default 4). A resumed run reuses
            the interrupted run's batch size so its results are bit-identical.
        loader_workers: processes decoding images ahead (default: none on CPU, several
            on a GPU; ``engine.loading.default_workers``).
        ray_address: run the batches on a Ray cluster (``"auto"``, ``"host:6379"`` or
            ``"ray://host:10001"``) with ``workers`` actors of ``gpus_per_worker`` GPUs and
            ``threads_per_worker`` torch threads (default: this process's count, which
            keeps results bit-identical to an in-process run); see docs/scale.md.
        wait_s: if another process is running this prefix on this dataset, wait up to this
            many seconds for it before raising :class:`RunInProgressError` (docs/concurrency.md).
    """
    # ---- validate everything before touching the database: bad input writes nothing
    runs.check_prefix(prefix)
    _check_numbers(batch_size=batch_size, write_every=write_every, flush_seconds=flush_seconds,
                   max_samples=max_samples, wait_s=wait_s)
    if ray_address:
        from ..dist.ray_runner import label_on_ray

        return label_on_ray(
            samples, label_field, ray_address=ray_address, workers=workers,
            gpus_per_worker=gpus_per_worker, threads_per_worker=threads_per_worker, prefix=prefix,
            classifier=classifier, segmenter=segmenter, sam2_checkpoint=sam2_checkpoint, config=config,
            batch_size=batch_size, write_every=write_every, flush_seconds=flush_seconds,
            overwrite=overwrite, output_dir=output_dir, progress=progress, progress_bar=progress_bar,
            max_samples=max_samples, limits=limits, wait_s=wait_s,
        )
    t0 = time.perf_counter()
    dataset = samples._root_dataset if isinstance(samples, fo.DatasetView) else samples
    try:
        # ---- one run per prefix at a time (claims.py); renewed while this run lives
        with claim_prefix(dataset, prefix, wait_s=wait_s, auto_renew=True) as claim:
            plan = prepare_run(samples, label_field, prefix=prefix, classifier=classifier, segmenter=segmenter,
                               sam2_checkpoint=sam2_checkpoint, config=config, batch_size=batch_size,
                               overwrite=overwrite, output_dir=output_dir, limits=limits)
            summary, dataset, names = plan.summary, plan.dataset, plan.names
            budget = len(plan.todo) if max_samples is None else min(max_samples, len(plan.todo))
            bar = _bar(budget, progress_bar)
            pending: list[tuple[str, dict]] = []
            done, last_flush = 0, time.perf_counter()
            batches = list(plan.batches(budget))
            path_of = dict(zip(plan.all_ids, plan.samples.values("filepath")))
            # images are decoded ahead by DataLoader workers while the model works on the batch before
            loaded = load_batches([[path_of[i] for i in chunk] for chunk, _ in batches], workers=loader_workers,
                                  device=plan.clf.device)
            try:
                for (chunk, missing), images in zip(batches, loaded):
                    paths, labels = plan.inputs(chunk)
                    for sid, vals in process_batch(plan.ewc, plan.clf, chunk, paths, labels, plan.out_dir,
                                                   plan.target_id, plan.exp_keys, keep=set(missing),
                                                   loaded=images):
                        pending.append((sid, vals))
                        count_outcome(summary, vals)
                    done += len(missing)
                    if len(pending) >= write_every or time.perf_counter() - last_flush > flush_seconds:
                        claim.check()  # never write after another process took the prefix over
                        summary.write_seconds += flush(dataset, pending, names)
                        pending, last_flush = [], time.perf_counter()
                    bar.update(len(missing))
                    if progress:
                        progress(done, budget)
                claim.check()
                summary.write_seconds += flush(dataset, pending, names)
            finally:
                loaded.close()  # stops the decoding workers if the run ends early
                bar.close()
            summary.processed = done
            finish_run(plan)
    except ConnectionFailure as e:
        raise DatabaseUnavailableError(down_message(e)) from None
    summary.seconds = time.perf_counter() - t0
    return summary


def count_outcome(summary: LabelSummary, vals: dict) -> None:
    if "error" in vals:
        summary.errors[vals["error_kind"]] += 1
    else:
        summary.succeeded += 1


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
) -> RunPlan:
    """Check ownership and settings, declare every output field and save the run record:
    all schema changes happen here, before any batch runs (concurrent field additions
    race in FiftyOne, voxel51/fiftyone#3185)."""
    runs.check_prefix(prefix)
    _check_numbers(batch_size=batch_size)
    dataset = samples._root_dataset if isinstance(samples, fo.DatasetView) else samples
    # not len(): on a whole dataset it is MongoDB's estimated count, 0 after a database crash
    if not samples.limit(1).values("id"):
        raise ConfigError("the view is empty: nothing to label")
    kind = label_kind(samples, label_field)
    if label_field.startswith(f"{prefix}_"):
        raise ConfigError(f"label field {label_field!r} uses the run prefix {prefix!r}; pick another prefix")

    clf = classifier if isinstance(classifier, Classifier) else load_classifier(classifier)
    cfg = config or EWCConfig()
    seg = segmenter if isinstance(segmenter, Segmenter) else create_segmenter(segmenter, checkpoint=sam2_checkpoint)
    ewc = EWC(clf, seg, cfg, limits)
    if cfg.objectness or cfg.objectness_labels:
        from ..engine.objectness import require_objectness

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
            raise ConfigError(
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
    record = new
    target_id = {v: k for k, v in mask_targets.items()}

    all_ids = samples.values("id")
    todo = set(samples.exists(names["confidence"], False).exists(names["error"], False).values("id"))
    summary = LabelSummary(prefix=prefix, total=len(all_ids), skipped_done=len(all_ids) - len(todo),
                           segmenter=seg.name, output_dir=out_dir)
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


def _comparable(described: dict) -> dict:
    """The part of a run's description that must match to resume it (JSON-normalised,
    as it comes back from the database)."""
    return json.loads(json.dumps({"classifier": described["classifier"], "explainers": described["explainers"],
            "config": described["config"], "segmenter": described["segmenter"]["name"]}))


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


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def _bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="ewc-fo", dynamic_ncols=True)

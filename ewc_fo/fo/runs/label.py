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

import logging
import time

import fiftyone as fo
from pymongo.errors import ConnectionFailure

from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.fo.database import down_message
from ewc_fo.fo.runs import record as runs
from ewc_fo.fo.runs.claims import claim_prefix
from ewc_fo.fo.runs.label_inputs import _check_numbers, label_kind  # noqa: F401  (label_kind: API)
from ewc_fo.fo.runs.outcome import BatchProgress, FaultGuard, LabelSummary, ProgressFn, make_bar
from ewc_fo.fo.runs.plan import default_output_dir, finish_run, prepare_run  # noqa: F401
from ewc_fo.fo.runs.sample_values import flush, process_batch
from ewc_fo.models.classifier import Classifier
from ewc_fo.runtime.budget import Limits
from ewc_fo.runtime.errors import (
    AlreadyLabeledError,
    DatabaseUnavailableError,
    EnvironmentFaultError,
)
from ewc_fo.runtime.loading import load_batches
from ewc_fo.segmenters import Segmenter

log = logging.getLogger(__name__)

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
    segmentation_model=None,
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
        progress: ``progress(done, total)`` after every image (the plugin uses it).
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
        segmentation_model: a model from ``ewc-fo train-seg`` (path or
            :class:`~ewc_fo.engine.seg_labeler.SegModelLabeler`) labels alone instead of EWC:
            one forward pass per image, the same fields, files and resume (docs/distill.md);
            with ``ray_address``, each worker loads it once.
    """
    # ---- validate everything before touching the database: bad input writes nothing
    runs.check_prefix(prefix)
    _check_numbers(batch_size=batch_size, write_every=write_every, flush_seconds=flush_seconds,
                   max_samples=max_samples, wait_s=wait_s)
    engine = None
    if segmentation_model is not None and not ray_address:
        from ewc_fo.engine.seg_labeler import SegModelLabeler

        engine = segmentation_model if isinstance(segmentation_model, SegModelLabeler) else \
            SegModelLabeler(str(segmentation_model), limits=limits)
    if ray_address:
        from ewc_fo.distributed.ray_runner import label_on_ray

        return label_on_ray(
            samples, label_field, ray_address=ray_address, workers=workers,
            gpus_per_worker=gpus_per_worker, threads_per_worker=threads_per_worker, prefix=prefix,
            classifier=classifier, segmenter=segmenter, sam2_checkpoint=sam2_checkpoint, config=config,
            batch_size=batch_size, write_every=write_every, flush_seconds=flush_seconds,
            overwrite=overwrite, output_dir=output_dir, progress=progress, progress_bar=progress_bar,
            max_samples=max_samples, limits=limits, wait_s=wait_s, segmentation_model=segmentation_model,
        )
    t0 = time.perf_counter()
    dataset = samples._root_dataset if isinstance(samples, fo.DatasetView) else samples
    try:
        # ---- one run per prefix at a time (claims.py); renewed while this run lives
        with claim_prefix(dataset, prefix, wait_s=wait_s, auto_renew=True) as claim:
            try:
                plan = prepare_run(samples, label_field, prefix=prefix, classifier=classifier,
                                   segmenter=segmenter, sam2_checkpoint=sam2_checkpoint, config=config,
                                   batch_size=batch_size, overwrite=overwrite, output_dir=output_dir,
                                   limits=limits, engine=engine)
            except AlreadyLabeledError:
                if not getattr(claim, "waited", False):
                    raise
                # the run this one waited for finished the same work: that is success
                n = len(samples.values("id"))
                return LabelSummary(prefix=prefix, total=n, skipped_done=n, seconds=time.perf_counter() - t0,
                                    note="another process finished this run while this one waited: "
                                    "nothing left to do")
            summary, dataset, names = plan.summary, plan.dataset, plan.names
            budget = len(plan.todo) if max_samples is None else min(max_samples, len(plan.todo))
            bar = make_bar(budget, progress_bar)
            moves = BatchProgress(bar, progress, budget)
            plan.ewc.on_stage = moves.stage  # the bar moves while a batch's stages run
            pending: list[tuple[str, dict]] = []
            done, last_flush = 0, time.perf_counter()
            batches = list(plan.batches(budget))
            path_of = dict(zip(plan.all_ids, plan.samples.values("filepath")))
            # images are decoded ahead by DataLoader workers while the model works on the batch before
            loaded = load_batches([[path_of[i] for i in chunk] for chunk, _ in batches], workers=loader_workers,
                                  device=plan.clf.device)
            guard = FaultGuard(summary)  # internal errors in a row: the environment's fault
            try:
                for (chunk, missing), images in zip(batches, loaded):
                    paths, labels = plan.inputs(chunk)
                    moves.start_batch(len(missing))
                    for sid, vals in process_batch(plan.ewc, plan.clf, chunk, paths, labels, plan.out_dir,
                                                   plan.target_id, plan.exp_keys, keep=set(missing),
                                                   loaded=images):
                        try:
                            pending += guard.add(sid, vals)
                        except EnvironmentFaultError:
                            claim.check()  # what finished before the fault is kept
                            flush(dataset, pending, names)
                            raise
                        moves.image()  # per image, as its files are written
                    moves.end_batch()
                    done += len(missing)
                    if len(pending) >= write_every or time.perf_counter() - last_flush > flush_seconds:
                        claim.check()  # never write after another process took the prefix over
                        summary.write_seconds += flush(dataset, pending, names)
                        pending, last_flush = [], time.perf_counter()
                pending += guard.release()
                claim.check()
                summary.write_seconds += flush(dataset, pending, names)
            finally:
                loaded.close()  # stops the decoding workers if the run ends early
                plan.ewc.on_stage = None
                bar.close()
            summary.processed = done
            finish_run(plan)
    except ConnectionFailure as e:
        raise DatabaseUnavailableError(down_message(e)) from None
    summary.seconds = time.perf_counter() - t0
    return summary



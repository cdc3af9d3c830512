"""A label run on a Ray cluster: one actor per worker holds the engine, the driver writes.

Why this shape (docs/scale.md has the measurements):

- **Ray Core actors, not Ray Data.** Results are bit-identical to an in-process run only if
  every batch holds exactly the samples the in-process run put together (batch composition
  changes conv arithmetic in the last bits). The driver cuts batches at the same fixed
  positions (:meth:`RunPlan.batches`) and sends each one whole to an actor; Ray Data's
  ``map_batches`` re-cuts batches at block boundaries, which would change them.
- **Retries are Ray's.** Actors restart (``max_restarts=-1``) and a task whose actor died
  is retried (``max_task_retries=-1``). A batch's files are written atomically and its
  values travel back only when the batch is done, so a redone batch rewrites the same bytes
  and nothing is lost or written twice.
- **The driver writes** (through the same :func:`flush` as the in-process run: one
  ``set_values`` per field, the finished-marker last), so workers need the shared
  filesystem but no database, and one process holds the run's prefix claim.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import fiftyone as fo

from ewc_fo.engine.pipeline import EWC, EWCConfig
from ewc_fo.fo.runs.claims import claim_prefix
from ewc_fo.fo.runs.outcome import FaultGuard, LabelSummary, ProgressFn
from ewc_fo.fo.runs.plan import finish_run, prepare_run
from ewc_fo.fo.runs.sample_values import flush, process_batch
from ewc_fo.models.classifier import Classifier
from ewc_fo.models.registry import load_classifier
from ewc_fo.runtime.budget import Limits
from ewc_fo.runtime.errors import ConfigError, EnvironmentFaultError, EWCError
from ewc_fo.segmenters import Segmenter, create_segmenter

#: batches queued per actor, so an actor never waits for the driver between batches
IN_FLIGHT_PER_WORKER = 2


class DatabaseUnreachableError(EWCError):
    """The FiftyOne database stopped answering during a run."""

    kind = "database"


@dataclass
class WorkerSpec:
    """What an actor needs to build the engine once and label any batch of the run."""

    classifier: str | Classifier
    segmenter: str | Segmenter
    sam2_checkpoint: str | None
    config: EWCConfig | None
    threads: int
    out_dir: str
    target_id: dict[str, int]
    exp_keys: list[str]
    classifier_options: dict | None = None
    segmenter_options: dict | None = None
    limits: Limits | None = None
    #: a model from ``ewc-fo train-seg`` labels instead of EWC: its path (the workers share the
    #: filesystem, as for the run's files) and :class:`SegModelLabeler`'s options
    segmentation_model: str | None = None
    segmentation_options: dict | None = None


class LabelWorker:
    """Ray actor body: loads the classifier and the segmenter once (or the trained
    segmentation model, once), then labels batches.

    Uses a GPU when Ray gave it one (``num_gpus``), else the CPU; a classifier given as an
    instance is moved there.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        import ray
        import torch

        torch.set_num_threads(spec.threads)
        device = "cuda" if ray.get_gpu_ids() else "cpu"
        self.spec, self.device = spec, device
        if spec.segmentation_model is not None:
            from ewc_fo.engine.seg_labeler import SegModelLabeler

            opts = dict(spec.segmentation_options or {})
            if device != "cpu":  # the driver's CPU runtime is not this worker's: its GPU runs torch
                opts["runtime"] = "auto"
            self.ewc = SegModelLabeler(spec.segmentation_model, device=device, **opts)
            self.clf = self.ewc.clf
            return
        if isinstance(spec.classifier, Classifier):
            clf = spec.classifier
            clf.model.to(device)
        else:
            clf = load_classifier(spec.classifier, device=device, **(spec.classifier_options or {}))
        seg = spec.segmenter
        if not isinstance(seg, Segmenter):
            seg = create_segmenter(seg, checkpoint=spec.sam2_checkpoint, device=device,
                                   **(spec.segmenter_options or {}))
        # the actor's thread share also sizes its per-image and GrabCut pools: by default they
        # take every core of the node, and N actors per node would each start that many threads
        if hasattr(seg, "workers"):
            seg.workers = spec.threads
        self.clf = clf
        self.ewc = EWC(clf, seg, spec.config, spec.limits)
        self.ewc.workers = spec.threads

    def run(self, ids: list[str], paths: list[str], labels: list[list[str]],
            missing: list[str]) -> list[tuple[str, dict]]:
        s = self.spec
        return list(process_batch(self.ewc, self.clf, ids, paths, labels, s.out_dir, s.target_id,
                                  s.exp_keys, keep=set(missing)))

    def info(self) -> dict:
        """Process id, node, device and engine (tests kill workers by pid)."""
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "device": self.device,
                "engine": type(self.ewc).__name__}


def label_on_ray(
    samples: fo.Dataset | fo.DatasetView,
    label_field: str,
    *,
    ray_address: str = "auto",
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    threads_per_worker: int | None = None,
    prefix: str = "ewc",
    classifier: str | Classifier = "efficientnet_lite0",
    segmenter: str | Segmenter = "auto",
    sam2_checkpoint: str | None = None,
    classifier_options: dict | None = None,
    segmenter_options: dict | None = None,
    config: EWCConfig | None = None,
    batch_size: int | None = None,
    write_every: int = 32,
    flush_seconds: float = 10.0,
    overwrite: bool = False,
    output_dir: str | None = None,
    progress: ProgressFn | None = None,
    progress_bar: bool = True,
    max_samples: int | None = None,
    on_workers: Callable[[list[dict]], None] | None = None,
    limits: Limits | None = None,
    wait_s: float = 0.0,
    segmentation_model=None,
) -> LabelSummary:
    """:func:`ewc_fo.label` on a Ray cluster; same fields, files and record, bit for bit.

    ``threads_per_worker`` defaults to this process's torch thread count: the thread count
    changes float summation order, so keeping it keeps results bit-identical to an
    in-process run. ``on_workers(infos)`` is called once the actors are up (tests use it).
    ``segmentation_model``: a model file from ``ewc-fo train-seg`` (or a
    :class:`~ewc_fo.engine.seg_labeler.SegModelLabeler`) labels instead of EWC; each worker
    loads it once from the path, which every node must see (docs/distill.md).
    """
    import ray
    import torch

    if workers < 1:
        raise ConfigError("workers must be >= 1")
    t0 = time.perf_counter()
    dataset = samples._root_dataset if isinstance(samples, fo.DatasetView) else samples
    claim = claim_prefix(dataset, prefix, wait_s=wait_s, auto_renew=True)
    # the driver loads the models too (on its CPU): it checks classes and settings and
    # records the run exactly as an in-process run would; workers load their own copies
    engine, seg_path, seg_opts = _segmentation_engine(segmentation_model, limits)
    if engine is None:
        clf = classifier if isinstance(classifier, Classifier) else load_classifier(
            classifier, **(classifier_options or {}))
        seg = segmenter if isinstance(segmenter, Segmenter) else create_segmenter(
            segmenter, checkpoint=sam2_checkpoint, **(segmenter_options or {}))
    else:
        clf = seg = None
    with claim as held, _database_errors("preparing the run"):
        plan = prepare_run(samples, label_field, prefix=prefix, classifier=clf,
                           segmenter=seg, sam2_checkpoint=sam2_checkpoint, config=config,
                           batch_size=batch_size, overwrite=overwrite, output_dir=output_dir,
                           limits=limits, engine=engine)
        summary = plan.summary
        budget = len(plan.todo) if max_samples is None else min(max_samples, len(plan.todo))
        spec = WorkerSpec(
            classifier=classifier, segmenter=segmenter, sam2_checkpoint=sam2_checkpoint,
            config=None if engine is not None else plan.ewc.config,
            threads=int(threads_per_worker or torch.get_num_threads()),
            out_dir=plan.out_dir, target_id=plan.target_id, exp_keys=plan.exp_keys,
            classifier_options=classifier_options, segmenter_options=segmenter_options,
            limits=limits, segmentation_model=seg_path, segmentation_options=seg_opts,
        )
        started_ray = not ray.is_initialized()
        if started_ray:
            _init_ray(ray_address)
        actors = []
        try:
            actor_cls = ray.remote(LabelWorker).options(
                num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=-1,
                max_task_retries=-1, scheduling_strategy="SPREAD",
            )
            actors = [actor_cls.remote(spec) for _ in range(workers)]
            if on_workers is not None:
                on_workers(ray.get([a.info.remote() for a in actors]))
            # never write after another process took the prefix over (claims.py)
            _drive(plan, actors, budget, write_every, flush_seconds, progress, progress_bar, held.check)
        finally:
            for a in actors:
                ray.kill(a)
            if started_ray:
                ray.shutdown()
        finish_run(plan)
    summary.seconds = time.perf_counter() - t0
    return summary


def _segmentation_engine(model, limits: Limits | None):
    """(the driver's labeler, the path and options the workers rebuild it from), or Nones."""
    if model is None:
        return None, None, None
    from ewc_fo.engine.seg_labeler import SegModelLabeler

    engine = model if isinstance(model, SegModelLabeler) else SegModelLabeler(str(model), limits=limits)
    return engine, engine.path, {"flip": engine.flip, "max_side": engine.max_side, "limits": engine.limits,
                                  "runtime": engine.runtime}


def _init_ray(address: str) -> None:
    import ray

    try:
        ray.init(address=address, log_to_driver=False, logging_level="warning")
    except (ConnectionError, ValueError) as e:  # ValueError: not an address ("Invalid address format")
        raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {e}; start one with "
                          "`ray start --head` or pass its address with --ray") from e


def _drive(plan, actors, budget: int, write_every: int, flush_seconds: float,
           progress: ProgressFn | None, progress_bar: bool, check: Callable[[], None]) -> None:
    """Keep every actor fed, collect finished batches as they come, write them in batches."""
    import ray

    summary = plan.summary
    batches = plan.batches(budget)
    inflight: dict = {}  # result ref -> (actor index, missing ids)
    load = [0] * len(actors)
    pending: list[tuple[str, dict]] = []
    done, last_flush, exhausted = 0, time.perf_counter(), False
    bar = _bar(budget, progress_bar)
    guard = FaultGuard(summary)  # internal errors in a row: the environment's fault
    try:
        while True:
            while not exhausted and min(load) < IN_FLIGHT_PER_WORKER:
                nxt = next(batches, None)
                if nxt is None:
                    exhausted = True
                    break
                chunk, missing = nxt
                with _database_errors("reading a batch"):
                    paths, labels = plan.inputs(chunk)
                k = load.index(min(load))
                inflight[actors[k].run.remote(chunk, paths, labels, missing)] = (k, missing)
                load[k] += 1
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                k, missing = inflight.pop(ref)
                load[k] -= 1
                for sid, vals in ray.get(ref):
                    try:
                        pending += guard.add(sid, vals)
                    except EnvironmentFaultError:
                        with _database_errors(f"writing {len(pending)} results"):
                            check()  # what finished before the fault is kept
                            flush(plan.dataset, pending, plan.names)
                        raise
                done += len(missing)
                bar.update(len(missing))
                bar.set_postfix(failed=sum(summary.errors.values()), refresh=False)
                if progress:
                    progress(done, budget)
            if len(pending) >= write_every or time.perf_counter() - last_flush > flush_seconds:
                with _database_errors(f"writing {len(pending)} results"):
                    check()
                    summary.write_seconds += flush(plan.dataset, pending, plan.names)
                pending, last_flush = [], time.perf_counter()
        pending += guard.release()
        with _database_errors(f"writing {len(pending)} results"):
            check()
            summary.write_seconds += flush(plan.dataset, pending, plan.names)
    finally:
        bar.close()
    summary.processed = done


@contextlib.contextmanager
def _database_errors(doing: str):
    """Turn a lost database into one clear error. Markers are written last, so whatever
    was not written stays unmarked and the same command resumes it."""
    from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

    try:
        yield
    except (ServerSelectionTimeoutError, AutoReconnect) as e:
        raise DatabaseUnreachableError(
            f"the FiftyOne database stopped answering while {doing} ({type(e).__name__}); "
            "samples without a finished marker were not counted as done: run the same command "
            "again once the database is back to resume"
        ) from e


def _bar(total: int, enabled: bool):
    from ewc_fo.fo.runs.outcome import make_bar

    return make_bar(total, enabled)

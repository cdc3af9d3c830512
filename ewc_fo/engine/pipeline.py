"""The EWC method end to end for a batch of images: explain -> score -> fuse -> prompt -> segment -> merge.

:class:`EWC` is host-agnostic: numpy images and class indices in, :class:`ImageResult` out.
The FiftyOne layer (``ewc_fo.fo``) streams datasets through it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from ewc_fo.engine.config import DEFAULT_EXPLAINERS, DEFAULT_PROPOSAL_GRID, EWCConfig  # noqa: F401
from ewc_fo.engine.explain import ExplainOutput, explain
from ewc_fo.engine.explainers import Explainer, create_explainer, list_explainers
from ewc_fo.engine.maps import (
    _check_working,
    downscale,
    merge,
)
from ewc_fo.engine.prompts import Prompt
from ewc_fo.engine.proposals import grid_points
from ewc_fo.engine.results import ClassResult, ImageResult
from ewc_fo.engine.stages import finish, fuse_maps, prepare
from ewc_fo.models.classifier import Classifier, describe
from ewc_fo.runtime.budget import Deadline, Limits, thread_map
from ewc_fo.runtime.device import autocast_dtype, cpu_count, empty_cache, is_oom
from ewc_fo.runtime.errors import ConfigError, EWCError, NoLabelError, TooManyClassesError
from ewc_fo.runtime.images import check_image
from ewc_fo.segmenters import Segmenter

log = logging.getLogger(__name__)

#: the stages of a batch in the order they run (``EWC.timings`` keys; downscale is per image)
BATCH_STAGES = ("explain", "objectness", "prepare", "segmenter_set", "segment_explainers", "fuse",
                "segment_fused", "proposals", "merge")

class EWC:
    """Explain with Confidence over a classifier and a segmenter.

    >>> ewc = EWC(load_classifier(), create_segmenter("grabcut"))
    >>> results = ewc.run([image], [["tabby"]])
    """

    def __init__(self, classifier: Classifier, segmenter: Segmenter, config: EWCConfig | None = None,
                 limits: Limits | None = None, *, precision: str = "auto", objectness=None):
        self.clf = classifier
        self.segmenter = segmenter
        self.config = config or EWCConfig()
        #: image (H, W, 3) uint8 -> (H, W) objectness in [0, 1]; loaded on first use when
        #: ``config.objectness`` or ``config.objectness_labels`` is > 0 and none is given
        self.objectness = objectness
        self.limits = limits or Limits()  # time/memory bounds: not part of the recorded method
        #: execution, not method (so not in the config): "auto" = bfloat16 autocast on a
        #: GPU, float32 on CPU; "bf16" / "fp32" force one
        self.precision = precision
        self._amp = autocast_dtype(self.clf.device, precision)
        #: threads for the per-image steps of a batch; None = every core this process may use
        self.workers: int | None = None
        #: seconds spent per stage since creation (benchmarks read and reset it)
        self.timings: dict[str, float] = defaultdict(float)
        #: ``on_stage(name, share)`` after each stage of a batch: ``share`` is the part of the
        #: batch's work done so far, estimated from earlier batches' stage times (the stages'
        #: count on the first); hosts move a progress bar with it while a long batch runs
        self.on_stage: Callable[[str, float], None] | None = None
        self._shares: dict[str, float] = {}
        names = self.config.explainers or DEFAULT_EXPLAINERS
        self.explainers: list[Explainer] = [create_explainer(n) for n in names]
        keys = [e.key for e in self.explainers]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"explainers listed twice: {keys}")
        can_propose = hasattr(segmenter, "propose")
        grid = self.config.proposal_grid
        if grid and not can_propose:
            raise ConfigError(f"proposal_grid needs a segmenter that makes proposals (sam-onnx), "
                              f"not {segmenter.name!r}")
        #: the proposal grid this run uses (config None: the default where the segmenter can propose)
        self.proposal_grid = (DEFAULT_PROPOSAL_GRID if can_propose else 0) if grid is None else grid
        if self.config.proposal_objectness is None:  # resolved once, so the run records what it used
            on = self.proposal_grid > 0 and (objectness is not None or _objectness_installed())
            self.config = replace(self.config, proposal_objectness=on)
        for e in self.explainers:
            if e.family == "cam":
                e.layer_name(self.clf)

    def describe(self) -> dict:
        return {
            "classifier": describe(self.clf),
            "segmenter": self.segmenter.describe(),
            "objectness": str(getattr(self.objectness, "path", "")) or None,
            "config": self.config.to_dict(),
            "explainers": [e.key for e in self.explainers],
            "proposal_grid": self.proposal_grid,
            "available_explainers": list_explainers(),
        }

    def run(self, images: Sequence[np.ndarray], classes: Sequence[Sequence[str | int]], *,
            errors: str = "raise") -> list[ImageResult]:
        """Label a batch: ``classes[i]`` lists image i's image-level classes (names or indices).

        ``errors="return"``: a sample's own :class:`EWCError` (bad image or label, a flat
        image, too many classes, its time budget spent) takes its place in the returned
        list and the other samples go on; ``"raise"`` raises the first one.

        Out of accelerator memory on a batch, the batch is split in halves and each half
        retried (recursively, down to one image), so a too-large batch costs time, not the run.
        """
        try:
            return self._run_batch(images, classes, errors)
        except Exception as e:
            if not is_oom(e) or len(images) < 2:
                raise
            empty_cache(self.clf.device)
            h = len(images) // 2
            log.warning("out of memory on a batch of %d images: retrying as %d + %d",
                        len(images), h, len(images) - h)
            return self.run(images[:h], classes[:h], errors=errors) + \
                self.run(images[h:], classes[h:], errors=errors)

    def _run_batch(self, images: Sequence[np.ndarray], classes: Sequence[Sequence[str | int]],
                   errors: str = "raise") -> list:
        if len(images) != len(classes):
            raise ConfigError(f"{len(images)} images but {len(classes)} class lists")
        if errors not in ("raise", "return"):
            raise ConfigError(f"errors must be 'raise' or 'return', got {errors!r}")
        cfg, lim = self.config, self.limits
        out: list = [None] * len(images)
        idx, work = {}, {}
        for i, (im, cs) in enumerate(zip(images, classes)):
            try:
                idx[i] = self._class_ids(cs)
                check_image(im)
                with self._stage("downscale"):
                    work[i] = downscale(im, cfg.max_side)
                _check_working(im, work[i], cfg.max_side)
            except EWCError as e:
                if errors == "raise":
                    raise
                out[i] = e
        ok = [i for i in range(len(images)) if out[i] is None]
        if not ok:
            return out
        self._shares = batch_shares(self.timings)
        torch.manual_seed(cfg.seed)
        # the batch's explain pass gets the budget of all its samples
        batch_budget = None if lim.sample_timeout_s is None else lim.sample_timeout_s * len(ok)
        try:
            with self._stage("explain"):
                outs = explain(self.clf, [work[i] for i in ok], [idx[i] for i in ok], self.explainers,
                               size=cfg.explain_size, scales=cfg.scales, flip=cfg.flip,
                               chunk=lim.class_chunk, deadline=Deadline(batch_budget, "batch"),
                               amp=self._amp)
        except EWCError as e:
            if errors == "raise":
                raise
            return [e if r is None else r for r in out]
        # the whole batch at once (one SAM2 encoder pass, one pool of cuts), on the batch's budget
        try:
            res = self.segment_batch([images[i] for i in ok], [work[i] for i in ok], outs,
                                     deadline=Deadline(batch_budget, "batch"))
            for i, r in zip(ok, res):
                out[i] = r
            return out
        except EWCError:
            if errors == "raise":
                raise
        # a sample failed or the batch ran out of time: each sample alone, on its own budget,
        # so only the culprit gets the error
        for i, o in zip(ok, outs):
            try:
                out[i] = self.segment_explained(images[i], work[i], o, deadline=Deadline(lim.sample_timeout_s))
            except EWCError as e:
                out[i] = e
        return out

    @contextmanager
    def _stage(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            if self.clf.device.type == "cuda":  # charge queued GPU work to its own stage
                torch.cuda.synchronize(self.clf.device)
            self.timings[name] += time.perf_counter() - t
        if self.on_stage is not None and name in BATCH_STAGES:  # only once the stage succeeded
            self.on_stage(name, self._shares.get(name, 1.0))

    def _class_ids(self, cs) -> list[int]:
        """Class indices of one sample's labels (deduplicated), within ``limits.max_classes``."""
        if isinstance(cs, (str, int, np.integer)):
            cs = [cs]  # one label given bare: "tabby", not ["tabby"]
        if cs is None or not len(cs):
            raise NoLabelError("an image has no image-level label to explain")
        ids = list(dict.fromkeys(self.clf.class_index(c) for c in cs))
        if len(ids) > self.limits.max_classes:
            raise TooManyClassesError(
                f"the sample has {len(ids)} image-level classes; at most {self.limits.max_classes} "
                "per image are labeled (every class's maps and masks are held until the sample "
                "is written; raise Limits.max_classes / --max-classes if memory allows)"
            )
        return ids

    # ------------------------------------------------------------------ a batch

    def segment_explained(self, image: np.ndarray, work: np.ndarray, out: ExplainOutput,
                          deadline: Deadline | None = None, objectness: np.ndarray | None = None) -> ImageResult:
        """Score, fuse, prompt, segment and merge one already-explained image.

        ``work`` is ``image`` at the working size (:func:`downscale`) and ``out`` its maps;
        separate from :meth:`run` so maps computed once can be segmented many ways.
        ``deadline`` is checked between stages and, through ``segmenter.deadline``, inside
        the segmenter (:class:`SampleTimeoutError` when spent). ``objectness``: the image's
        objectness map at the working size, if already computed.
        """
        return self.segment_batch([image], [work], [out], deadline=deadline,
                                  objectness=None if objectness is None else [objectness])[0]

    def segment_batch(self, images: Sequence[np.ndarray], work: Sequence[np.ndarray],
                      outs: Sequence[ExplainOutput], deadline: Deadline | None = None,
                      objectness: Sequence[np.ndarray] | None = None) -> list[ImageResult]:
        """:meth:`segment_explained` for a whole batch, the segmenter working batch-wide:
        the batch is set once (SAM2: one image-encoder pass), then every explainer prompt
        of every image is cut in one call, then every fused prompt in one more.
        ``deadline`` bounds the whole batch (checked as in :meth:`segment_explained`)."""
        self.segmenter.deadline = deadline  # set first: GrabCut's per-image copies carry it
        try:
            return self._segment_batch(images, work, outs, deadline or Deadline(None), objectness)
        finally:
            self.segmenter.deadline = None

    def _segment_batch(self, images, work, outs, deadline: Deadline, objectness=None) -> list[ImageResult]:
        cfg = self.config
        if objectness is None:
            objectness = [None] * len(work)
            if cfg.objectness > 0 or cfg.objectness_labels > 0 or (self.proposal_grid and cfg.proposal_objectness):
                with self._stage("objectness"):
                    objectness = [self.objectness_of(w) for w in work]
        with self._stage("prepare"):
            states = self._map(partial(prepare, cfg), images, work, outs, objectness)
        deadline.check("scoring")
        with self._stage("segmenter_set"):
            self.segmenter.set_images(list(work))
        need_masks = (cfg.use_quality and len(self.explainers) > 1) or cfg.mask_weight > 0
        if need_masks or cfg.keep_explainer_masks:
            with self._stage("segment_explainers"):
                prompts = [s.per_exp for s in states]
                segs = self.segmenter.segment_images(prompts, draft=cfg.draft_quality) if need_masks \
                    else [None] * len(states)
                # ablations compare against full-quality masks
                kept = segs if (need_masks and not cfg.draft_quality) or not cfg.keep_explainer_masks \
                    else self.segmenter.segment_images(prompts, draft=False)
            for s, sg, kp in zip(states, segs, kept):
                s.segs, s.kept = sg, (kp if cfg.keep_explainer_masks else None)
        deadline.check("explainer masks")
        with self._stage("fuse"):
            self._map(partial(fuse_maps, cfg), states)
        with self._stage("segment_fused"):
            finals = self.segmenter.segment_images([s.final_prompts for s in states])
        deadline.check("final masks")
        if self.proposal_grid > 0:
            with self._stage("proposals"):
                for i, s in enumerate(states):
                    pts = grid_points(s.fused, s.out.scores, self.proposal_grid, cfg.proposal_threshold)
                    s.proposals = self.segmenter.propose(i, pts)
        with self._stage("merge"):
            return self._map(partial(finish, cfg, self.clf.class_names), states, finals)

    def _map(self, fn, *args) -> list:
        """``[fn(*a) for a in zip(*args)]``, images on a thread pool: the per-image steps are
        numpy/OpenCV work that frees the GIL, and each image's result depends on it alone."""
        return thread_map(lambda a: fn(*a), zip(*args), self.workers or cpu_count(), name="ewc")

    def objectness_of(self, work: np.ndarray) -> np.ndarray:
        """The class-agnostic objectness of an image at the working size (method.md, 1c)."""
        if self.objectness is None:
            from ewc_fo.models.objectness import load_objectness

            self.objectness = load_objectness(None, str(self.clf.device))
        return self.objectness(work)


def batch_shares(timings: dict[str, float]) -> dict[str, float]:
    """Each stage's cumulative share of a batch's time: ``{"explain": 0.25, ..., "merge": 1.0}``.

    From the seconds spent so far (``EWC.timings``); with none yet, every stage counts the same."""
    secs = [max(0.0, timings.get(n, 0.0)) for n in BATCH_STAGES]
    total = sum(secs)
    if total <= 0:
        secs, total = [1.0] * len(BATCH_STAGES), float(len(BATCH_STAGES))
    shares, acc = {}, 0.0
    for n, t in zip(BATCH_STAGES, secs):
        acc += t
        shares[n] = min(1.0, acc / total)
    return shares


def _objectness_installed() -> bool:
    from ewc_fo.models.objectness import objectness_available

    return objectness_available()


__all__ = ["EWC", "EWCConfig", "ImageResult", "ClassResult", "DEFAULT_EXPLAINERS", "merge", "Prompt"]

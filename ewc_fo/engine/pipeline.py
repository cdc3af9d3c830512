"""The EWC method end to end for a batch of images: explain -> score -> fuse -> prompt -> segment -> merge.

:class:`EWC` is host-agnostic: numpy images and class indices in, :class:`ImageResult` out.
The FiftyOne layer (``ewc_fo.fo``) streams datasets through it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch

from ewc_fo.engine.explain import ExplainOutput, explain
from ewc_fo.engine.explainers import Explainer, create_explainer, list_explainers
from ewc_fo.engine.maps import (
    _check_working,
    _resize_mask,
    compete,
    downscale,
    gate,
    merge,
    relabel_instances,
    salient_labels,
)
from ewc_fo.engine.prompts import Prompt, PromptConfig, make_prompt
from ewc_fo.engine.refine import check_method, refine_segmentations
from ewc_fo.engine.results import ClassResult, ImageResult
from ewc_fo.engine.scoring import (
    ScoreConfig,
    agreement,
    class_confidence,
    combine,
    concentration,
    fuse,
    mask_consistency,
    pairwise_agreement,
)
from ewc_fo.models.classifier import Classifier, describe
from ewc_fo.runtime.budget import Deadline, Limits
from ewc_fo.runtime.device import autocast_dtype, cpu_count, empty_cache, is_oom
from ewc_fo.runtime.errors import ConfigError, EWCError, NoLabelError, TooManyClassesError
from ewc_fo.runtime.images import MIN_SIDE, check_image
from ewc_fo.runtime.limits import check_input_size
from ewc_fo.segmenters import Segmentation, Segmenter

log = logging.getLogger(__name__)

#: explainers used when none are named: CAMs from two layers plus a captum attribution.
#: EigenCAM is opt-in: it is class-agnostic, so on multi-class images every class gets the
#: same map (measured on voc_dev: fused + GrabCut 36.2% with it, 37.8% without; docs/method.md)
DEFAULT_EXPLAINERS = ("gradcam", "gradcampp", "xgradcam", "layercam", "input_x_gradient")


@dataclass(frozen=True)
class EWCConfig:
    """Every knob of the method; recorded with each run so masks are traceable."""

    explainers: tuple[str, ...] = DEFAULT_EXPLAINERS
    explain_size: int | None = None  # square side fed to the classifier; None = classifier's
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    max_side: int = 640  # maps, prompts and segmentation run at most at this size
    use_quality: bool = True  # prompt the segmenter with each explainer's map to score it
    score: ScoreConfig = field(default_factory=ScoreConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    seed: int = 0
    keep_explainer_masks: bool = False  # keep each explainer's own mask (ablations, benchmarks)
    #: score explainers on the segmenter's cheap draft masks (GrabCut only; SAM2 has one mode).
    #: Off by default: the masks also vote in the fused map (mask_weight), where draft
    #: masks cost 1.5 mIoU points on voc_dev (docs/method.md)
    draft_quality: bool = False
    #: fuse ``(1 - m) * map_k + m * mask_k``: each explainer votes with its map and with the
    #: mask its map prompted, so the fused map carries the segmenter's object boundaries
    mask_weight: float = 0.5
    #: 0..1: how much each explainer's map of a class is reduced where another class of the
    #: image is stronger (:func:`compete`); 0 keeps every map as it is
    class_competition: float = 0.7
    #: confidence = agreement^a * sqrt(quality * mass_inside)^(1 - a): how much of it is agreement
    confidence_agreement: float = 2 / 3
    #: refinement of the final masks with the fused map and the image (``refine.py``):
    #: "none", "crf" (needs pydensecrf) or "pamr" (torch)
    refine: str = "none"
    #: beta of refine.py: how much the segmenter's mask (vs the fused map) counts in the evidence
    refine_mask_weight: float = 0.5
    #: alpha in [0, 1]: every map is multiplied by ``(1 - alpha) + alpha * O`` with ``O`` the
    #: class-agnostic objectness of each pixel (``objectness.py``); 0 = no objectness cue
    objectness: float = 0.0
    #: t in [0, 1): when > 0, the label map is drawn from objectness instead of the masks' union:
    #: a pixel whose objectness reaches t goes to the class with the most probability-weighted
    #: fused evidence there, every other pixel is background (the saliency + CAM pseudo-label of
    #: weakly supervised segmentation); each class's mask is its share of that map
    objectness_labels: float = 0.0

    def __post_init__(self) -> None:
        # a comma-separated string is accepted for convenience ("gradcam,eigencam")
        if isinstance(self.explainers, str):
            names = tuple(n.strip() for n in self.explainers.split(",") if n.strip())
            object.__setattr__(self, "explainers", names)
        if isinstance(self.scales, (int, float)):
            object.__setattr__(self, "scales", (float(self.scales),))
        if not self.scales or min(self.scales) <= 0:
            raise ConfigError(f"scales must be positive numbers, got {self.scales!r}")
        if self.explain_size is not None:
            try:
                check_input_size(self.explain_size, "explain_size")
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if not 0 <= self.objectness_labels < 1:
            raise ConfigError(f"objectness_labels must be in [0, 1), got {self.objectness_labels}")
        for name in ("mask_weight", "class_competition", "refine_mask_weight", "objectness"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        check_method(self.refine)
        if int(self.max_side) < MIN_SIDE:
            raise ConfigError(f"max_side must be >= {MIN_SIDE}, got {self.max_side}")

    def to_dict(self) -> dict:
        return asdict(self)


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
        names = self.config.explainers or DEFAULT_EXPLAINERS
        self.explainers: list[Explainer] = [create_explainer(n) for n in names]
        keys = [e.key for e in self.explainers]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"explainers listed twice: {keys}")
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
            if cfg.objectness > 0 or cfg.objectness_labels > 0:
                with self._stage("objectness"):
                    objectness = [self.objectness_of(w) for w in work]
        with self._stage("prepare"):
            states = self._map(self._prepare, images, work, outs, objectness)
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
            self._map(self._fuse, states)
        with self._stage("segment_fused"):
            finals = self.segmenter.segment_images([s.final_prompts for s in states])
        deadline.check("final masks")
        with self._stage("merge"):
            return self._map(self._finish, states, finals)

    def _map(self, fn, *args) -> list:
        """``[fn(*a) for a in zip(*args)]``, images on a thread pool: the per-image steps are
        numpy/OpenCV work that frees the GIL, and each image's result depends on it alone."""
        items = list(zip(*args))
        n = min(len(items), self.workers or cpu_count())
        if n <= 1:
            return [fn(*a) for a in items]
        with ThreadPoolExecutor(n, thread_name_prefix="ewc") as pool:
            return list(pool.map(lambda a: fn(*a), items))

    def objectness_of(self, work: np.ndarray) -> np.ndarray:
        """The class-agnostic objectness of an image at the working size (method.md, 1c)."""
        if self.objectness is None:
            from ewc_fo.models.objectness import load_objectness

            self.objectness = load_objectness(None, str(self.clf.device))
        return self.objectness(work)

    def _prepare(self, image: np.ndarray, work: np.ndarray, out: ExplainOutput,
                 objectness: np.ndarray | None = None) -> _Work:
        """Class competition, objectness, per-explainer scores and each explainer's own prompts."""
        cfg = self.config
        K, C = out.maps.shape[:2]
        maps = out.maps
        if cfg.class_competition > 0 and C > 1:  # every explainer's maps, so singles compare fairly
            maps = np.stack([compete(m, out.scores, cfg.class_competition) for m in maps])
        if cfg.objectness > 0 and objectness is not None:
            maps = gate(maps, objectness, cfg.objectness)
        st = _Work(image=image, work=work, out=out, maps=maps, objectness=objectness,
                   conc=[concentration(maps[:, c]) for c in range(C)],
                   agree=[agreement(maps[:, c]) for c in range(C)])
        need_masks = (cfg.use_quality and K > 1) or cfg.mask_weight > 0
        if need_masks or cfg.keep_explainer_masks:
            st.per_exp = [make_prompt(maps[k, c], cfg.prompts) for c in range(C) for k in range(K)]
        return st

    def _fuse(self, st: _Work) -> None:
        """Explainer weights from the scores (and their masks' quality), fused maps, final prompts."""
        cfg = self.config
        maps, segs = st.maps, st.segs
        K, C = maps.shape[:2]
        if segs is not None and cfg.use_quality and K > 1:
            st.quality = np.array([
                mask_consistency(maps[k, c], segs[c * K + k].mask)
                * (segs[c * K + k].quality if cfg.score.segmenter_score else 1.0)
                for c in range(C) for k in range(K)
            ]).reshape(C, K)
        fused = []
        for c in range(C):
            s, w = combine(st.conc[c], st.agree[c], None if st.quality is None else st.quality[c], cfg.score)
            evidence = maps[:, c]
            if cfg.mask_weight > 0:
                masks = np.stack([segs[c * K + k].mask for k in range(K)]).astype(np.float32)
                evidence = (1 - cfg.mask_weight) * evidence + cfg.mask_weight * masks
            fused.append(fuse(evidence, w))
            st.weights.append(w)
        st.fused = np.stack(fused) if C else np.zeros((0, *st.work.shape[:2]), np.float32)
        st.final_prompts = [make_prompt(f, cfg.prompts) for f in st.fused]

    def _finish(self, st: _Work, final: list[Segmentation]) -> ImageResult:
        """Confidence per class, masks at full size, and the merged label map."""
        cfg = self.config
        out, maps, fused, quality = st.out, st.maps, st.fused, st.quality
        final = refine_segmentations(st.work, fused, final, out.scores, cfg.refine,
                                     cfg.refine_mask_weight)
        K, C = maps.shape[:2]
        H, W = st.image.shape[:2]
        agree_cls = [pairwise_agreement(maps[:, c]) for c in range(C)]
        results = []
        for c in range(C):
            seg = final[c]
            mask_w = seg.mask
            q = seg.quality
            mass, conf = class_confidence(agree_cls[c], q, fused[c], mask_w, cfg.confidence_agreement)
            scores = {
                out.names[k]: {
                    "concentration": float(st.conc[c][k]),
                    "agreement": float(st.agree[c][k]),
                    "quality": float(quality[c][k]) if quality is not None else float("nan"),
                    "weight": float(st.weights[c][k]),
                }
                for k in range(K)
            }
            results.append(ClassResult(
                class_index=out.classes[c], class_name=self.clf.class_names[out.classes[c]],
                probability=float(out.scores[c]),
                mask=_resize_mask(mask_w, H, W),
                instances=[(_resize_mask(m, H, W), qq) for m, qq in zip(seg.masks, seg.qualities)],
                quality=q, mass_inside=mass, confidence=conf, scores=scores,
                empty=not seg.masks,
                explainer_masks={out.names[k]: st.kept[c * K + k].mask for k in range(K)}
                if st.kept is not None else None,
            ))
        if cfg.objectness_labels > 0 and st.objectness is not None and C:
            label_map = salient_labels(fused, st.objectness, cfg.objectness_labels, (H, W), out.scores)
            small = cv2.resize(label_map, fused.shape[:0:-1], interpolation=cv2.INTER_NEAREST)
            obj = st.objectness if st.objectness.shape == small.shape else \
                cv2.resize(st.objectness, fused.shape[:0:-1], interpolation=cv2.INTER_LINEAR)
            for j, r in enumerate(results):
                r.mask, r.instances = relabel_instances(label_map == j + 1, r.instances, r.quality)
                # the confidence judges the mask that is written: the fused mass inside it, and
                # how surely it is an object (mean objectness) in place of the segmenter's quality
                m = small == j + 1
                q = float(obj[m].mean()) if m.any() else 0.0
                r.mass_inside, r.confidence = class_confidence(agree_cls[j], q, fused[j], m, cfg.confidence_agreement)
        else:
            label_map = merge(fused, [r.mask for r in results], (H, W), strengths=out.scores)
        agreement_img = float(np.mean(agree_cls)) if C else 0.0
        confidence = min((r.confidence for r in results), default=0.0)
        return ImageResult(results, label_map, maps, fused, out.names, agreement_img, confidence,
                           objectness=st.objectness)


@dataclass
class _Work:
    """One image on its way through :meth:`EWC.segment_batch` (between the segmenter rounds)."""

    image: np.ndarray
    work: np.ndarray
    out: ExplainOutput
    maps: np.ndarray
    conc: list
    agree: list
    objectness: np.ndarray | None = None
    per_exp: list[Prompt] = field(default_factory=list)
    segs: list[Segmentation] | None = None
    kept: list[Segmentation] | None = None
    quality: np.ndarray | None = None
    weights: list = field(default_factory=list)
    fused: np.ndarray | None = None
    final_prompts: list[Prompt] = field(default_factory=list)


__all__ = ["EWC", "EWCConfig", "ImageResult", "ClassResult", "DEFAULT_EXPLAINERS", "merge", "Prompt"]

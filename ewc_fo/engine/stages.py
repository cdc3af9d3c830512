"""The per-image steps of one batch between the segmenter rounds: scores and explainer prompts
(:func:`prepare`), weights and fused maps (:func:`fuse_maps`), confidences and the label map
(:func:`finish`). Pure functions of the config: :class:`~ewc_fo.engine.pipeline.EWC` runs them
on a thread pool."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ewc_fo.engine.config import EWCConfig
from ewc_fo.engine.explain import ExplainOutput
from ewc_fo.engine.maps import (
    _resize_mask,
    compete,
    gate,
    merge,
    relabel_instances,
    salient_labels,
)
from ewc_fo.engine.prompts import Prompt, make_prompt
from ewc_fo.engine.proposals import label_proposals
from ewc_fo.engine.refine import refine_segmentations
from ewc_fo.engine.results import ClassResult, ImageResult
from ewc_fo.engine.scoring import (
    agreement,
    class_confidence,
    combine,
    concentration,
    fuse,
    mask_consistency,
    pairwise_agreement,
)
from ewc_fo.segmenters import Segmentation


@dataclass
class ImageWork:
    """One image on its way through :meth:`~ewc_fo.engine.pipeline.EWC.segment_batch` (between the segmenter rounds)."""

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
    proposals: list | None = None  # [(mask, quality)] from the segmenter (config.proposal_grid)


def prepare(cfg: EWCConfig, image: np.ndarray, work: np.ndarray, out: ExplainOutput,
             objectness: np.ndarray | None = None) -> ImageWork:
    """Class competition, objectness, per-explainer scores and each explainer's own prompts."""
    K, C = out.maps.shape[:2]
    maps = out.maps
    if cfg.class_competition > 0 and C > 1:  # every explainer's maps, so singles compare fairly
        maps = np.stack([compete(m, out.scores, cfg.class_competition) for m in maps])
    if cfg.objectness > 0 and objectness is not None:
        maps = gate(maps, objectness, cfg.objectness)
    st = ImageWork(image=image, work=work, out=out, maps=maps, objectness=objectness,
               conc=[concentration(maps[:, c]) for c in range(C)],
               agree=[agreement(maps[:, c]) for c in range(C)])
    need_masks = (cfg.use_quality and K > 1) or cfg.mask_weight > 0
    if need_masks or cfg.keep_explainer_masks:
        st.per_exp = [make_prompt(maps[k, c], cfg.prompts) for c in range(C) for k in range(K)]
    return st

def fuse_maps(cfg: EWCConfig, st: ImageWork) -> None:
    """Explainer weights from the scores (and their masks' quality), fused maps, final prompts."""
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

def finish(cfg: EWCConfig, class_names: Sequence[str], st: ImageWork, final: list[Segmentation]) -> ImageResult:
    """Confidence per class, masks at full size, and the merged label map."""
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
            class_index=out.classes[c], class_name=class_names[out.classes[c]],
            probability=float(out.scores[c]),
            mask=_resize_mask(mask_w, H, W),
            instances=[(_resize_mask(m, H, W), qq) for m, qq in zip(seg.masks, seg.qualities)],
            quality=q, mass_inside=mass, confidence=conf, scores=scores,
            empty=not seg.masks,
            explainer_masks={out.names[k]: st.kept[c * K + k].mask for k in range(K)}
            if st.kept is not None else None,
        ))
    with_props = bool(st.proposals) and C > 0
    if cfg.objectness_labels > 0 and st.objectness is not None and C and not with_props:
        label_map = salient_labels(fused, st.objectness, cfg.objectness_labels, (H, W), out.scores)
        small = cv2.resize(label_map, fused.shape[:0:-1], interpolation=cv2.INTER_NEAREST)
        obj = _at(st.objectness, fused)
        for j, r in enumerate(results):
            r.mask, r.instances = relabel_instances(label_map == j + 1, r.instances, r.quality)
            # the confidence judges the mask that is written: the fused mass inside it, and
            # how surely it is an object (mean objectness) in place of the segmenter's quality
            m = small == j + 1
            q = float(obj[m].mean()) if m.any() else 0.0
            r.mass_inside, r.confidence = class_confidence(agree_cls[j], q, fused[j], m, cfg.confidence_agreement)
    elif with_props and cfg.proposal_objectness and st.objectness is not None:
        # pixels no proposal covers: the labels from objectness (at the level of the vote)
        base = salient_labels(fused, st.objectness, cfg.objectness_labels or cfg.proposal_threshold,
                              (H, W), out.scores)
        label_map = _relabel_by_proposals(cfg, st, results, base, agree_cls, _at(st.objectness, fused))
    else:
        label_map = merge(fused, [r.mask for r in results], (H, W), strengths=out.scores)
        if with_props:
            label_map = _relabel_by_proposals(cfg, st, results, label_map, agree_cls)
    agreement_img = float(np.mean(agree_cls)) if C else 0.0
    confidence = image_confidence([r.confidence for r in results], cfg.image_confidence)
    return ImageResult(results, label_map, maps, fused, out.names, agreement_img, confidence,
                       objectness=st.objectness,
                       proposals=st.proposals if cfg.keep_explainer_masks and with_props else None)


def image_confidence(class_confidences: Sequence[float], how: str = "product") -> float:
    """An image's confidence from its classes' (0 without classes): their product, the chance
    that every mask is right if each is right with its own confidence, or their minimum."""
    if not class_confidences:
        return 0.0
    return float(np.prod(class_confidences)) if how == "product" else float(min(class_confidences))


def _at(objectness: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """The objectness map at the fused maps' size."""
    if objectness.shape == fused.shape[1:]:
        return objectness
    return cv2.resize(objectness.astype(np.float32), fused.shape[:0:-1], interpolation=cv2.INTER_LINEAR)


def _relabel_by_proposals(cfg: EWCConfig, st: ImageWork, results: list[ClassResult], base: np.ndarray,
                          agree_cls: list, objectness: np.ndarray | None = None) -> np.ndarray:
    """The label map from SAM's proposals (``proposals.py``); each class's mask, instances and
    confidence follow the map that is written: its fused mass inside, and as its quality the
    proposals' predicted IoU, or with ``objectness`` its IoU with the class in ``base`` (the
    labels from objectness)."""
    fused = st.fused
    props = [(m if m.shape == fused.shape[1:] else
              cv2.resize(m.astype(np.uint8), fused.shape[:0:-1], interpolation=cv2.INTER_NEAREST) > 0, q)
             for m, q in st.proposals]
    H, W = base.shape
    label_map = label_proposals(fused, props, cfg.proposal_threshold, (H, W), st.out.scores, base, objectness)
    small = cv2.resize(label_map, fused.shape[:0:-1], interpolation=cv2.INTER_NEAREST)
    small_base = cv2.resize(base, fused.shape[:0:-1], interpolation=cv2.INTER_NEAREST) if objectness is not None else None
    for j, r in enumerate(results):
        m = small == j + 1
        if small_base is not None:
            # two independent cuts of the class, SAM's proposals and the objectness labels:
            # where they agree the mask is trusted (method.md v0.8)
            o = small_base == j + 1
            q = float((m & o).sum() / max(1, (m | o).sum()))
        else:
            qs = [(float((pm & m).sum()), q) for pm, q in props if (pm & m).any()]
            q = sum(a * qq for a, qq in qs) / sum(a for a, _ in qs) if qs else r.quality
        r.mask, r.instances = relabel_instances(label_map == j + 1, r.instances, q)
        r.quality = q
        r.mass_inside, r.confidence = class_confidence(agree_cls[j], q, fused[j], m, cfg.confidence_agreement)
    return label_map

"""SAM proposals labelled by the maps (the SEPL-style pseudo-label of weakly supervised
segmentation): the segmenter cuts whole objects from point prompts on one embedding, and
each object takes the class whose fused evidence it holds, or background.

Points come from a regular grid, only where some class has evidence (cold background needs
no proposal: it is the default), hottest first; a point already inside a kept proposal is
skipped, so an object costs one decoder call, not one per grid cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def evidence(fused: np.ndarray, strengths: Sequence[float]) -> np.ndarray:
    """(C, h, w) fused maps times each class's probability relative to the image's strongest."""
    st = np.asarray(strengths, np.float32)
    rel = st / max(float(st.max()), 1e-6)
    return fused * rel[:, None, None]


def grid_points(fused: np.ndarray, strengths: Sequence[float], grid: int, level: float) -> np.ndarray:
    """(N, 2) xy of the ``grid`` x ``grid`` cell centres whose best class evidence reaches
    ``level``, hottest first."""
    ev = evidence(fused, strengths).max(0)
    h, w = ev.shape
    xs = ((np.arange(grid) + 0.5) * w / grid).astype(int)
    ys = ((np.arange(grid) + 0.5) * h / grid).astype(int)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    v = ev[yy.ravel(), xx.ravel()]
    order = np.argsort(-v, kind="stable")
    order = order[v[order] >= level]
    return np.stack([xx.ravel()[order], yy.ravel()[order]], 1).astype(np.float32)


def label_proposals(fused: np.ndarray, proposals: Sequence[tuple[np.ndarray, float]], threshold: float,
                    shape: tuple[int, int], strengths: Sequence[float], base: np.ndarray,
                    objectness: np.ndarray | None = None) -> np.ndarray:
    """Label map (H, W): each proposal mask (at the fused maps' size) goes whole to the class with
    the most mean evidence inside it if its vote reaches ``threshold``, else to background
    (an "inside denser than outside" rule measured 5.9 mIoU points worse: docs/method.md v0.6).

    The vote is the mean evidence itself, or with ``objectness`` (at the maps' size) the mean
    of it and the proposal's mean objectness: the explainers say which class and roughly
    where, a class-agnostic detector says whether the cut is an object at all, and either
    alone passes a background cut (a wall, a road) that the other rejects (method.md v0.7).
    Larger proposals first, so a smaller one inside a larger keeps its own label. Pixels no
    proposal covers keep ``base``."""
    H, W = shape
    ev = evidence(fused, strengths)
    small = np.zeros(fused.shape[1:], np.int32) - 1  # -1: no proposal
    for m, _ in sorted(proposals, key=lambda p: -int(p[0].sum())):
        if not m.any():
            continue
        mean = ev[:, m].mean(1)
        c = int(mean.argmax())
        vote = mean[c] if objectness is None else (mean[c] + float(objectness[m].mean())) / 2
        small[m] = c + 1 if vote >= threshold else 0
    if small.shape != (H, W):
        small = cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)
    return np.where(small >= 0, small, base).astype(base.dtype)


__all__ = ["evidence", "grid_points", "label_proposals"]

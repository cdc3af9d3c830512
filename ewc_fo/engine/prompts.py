"""Dual thresholding: a fused map becomes segmenter prompts.

Thresholds are relative to the map's maximum (maps are in [0, 1] with max 1 unless empty):

- ``fg_threshold``: pixels at least this hot are confident foreground; positive points
  are spread over them (farthest-point sampling from the hottest pixel);
- ``box_threshold``: connected regions of the map above it that contain confident
  foreground become one box each (one object region, one box);
- ``bg_threshold``: pixels at most this hot are confident background; negative points
  are spread over them, preferring those far from any foreground.

An all-zero map gives an empty prompt (no cue at all): segmenters return an empty mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters.base import Prompt, Region  # noqa: F401  (the segmenters' input types)


@dataclass(frozen=True)
class PromptConfig:
    fg_threshold: float = 0.6
    box_threshold: float = 0.3
    bg_threshold: float = 0.1
    points_per_region: int = 3
    negative_points: int = 4
    min_region: float = 0.01  # regions smaller than this share of the image are dropped
    max_regions: int = 4
    #: thresholds are relative to this quantile of the map (1.0 = its maximum); below 1, a map
    #: whose evidence sits in a few sharp peaks (LayerCAM) is not judged by its single hottest pixel
    top_quantile: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.bg_threshold < self.box_threshold <= self.fg_threshold <= 1:
            raise ConfigError(
                "need 0 <= bg_threshold < box_threshold <= fg_threshold <= 1, got "
                f"{self.bg_threshold}, {self.box_threshold}, {self.fg_threshold}"
            )
        if self.points_per_region < 1 or self.negative_points < 0 or self.max_regions < 1:
            raise ConfigError("need points_per_region >= 1, negative_points >= 0, max_regions >= 1")
        if not 0.5 <= self.top_quantile <= 1:
            raise ConfigError(f"top_quantile must be in [0.5, 1], got {self.top_quantile}")
        if not 0 <= self.min_region < 1:
            raise ConfigError(f"min_region is a share of the image in [0, 1), got {self.min_region}")


def _farthest_points(coords: np.ndarray, n: int, start: int) -> np.ndarray:
    """Pick ``n`` spread-out rows of ``coords`` (farthest-point sampling from ``start``)."""
    if len(coords) == 0 or n <= 0:
        return np.zeros((0, 2), np.float32)
    chosen = [start]
    d = np.linalg.norm(coords - coords[start], axis=1)
    for _ in range(min(n, len(coords)) - 1):
        i = int(d.argmax())
        if d[i] <= 0:
            break
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(coords - coords[i], axis=1))
    return coords[chosen].astype(np.float32)


def make_prompt(fused: np.ndarray, cfg: PromptConfig = PromptConfig()) -> Prompt:
    """Dual-threshold ``fused`` (H, W) into regions with boxes, positive and negative points."""
    m = np.nan_to_num(fused.astype(np.float32))
    h, w = m.shape
    top = float(m.max())
    if top <= 1e-6:
        return Prompt([], np.zeros((0, 2), np.float32), m, cfg)
    if cfg.top_quantile < 1:
        warm = m[m > 0]
        top = max(float(np.quantile(warm, cfg.top_quantile)), 1e-6)
    m = np.minimum(m / top, 1.0)
    fg = m >= cfg.fg_threshold
    boxable = (m >= cfg.box_threshold).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(boxable, connectivity=8)
    min_area = cfg.min_region * h * w
    # candidate regions: components holding confident foreground, ranked by map mass;
    # small ones are dropped unless nothing else qualifies (whatever their scan order)
    ids = np.unique(lab[fg])
    ids = ids[ids > 0]
    mass = np.bincount(lab.ravel(), weights=m.ravel(), minlength=n)
    big = [int(i) for i in ids if stats[i, cv2.CC_STAT_AREA] >= min_area]
    keep_ids = big or [int(i) for i in ids]
    keep_ids.sort(key=lambda i: (-mass[i], i))
    regions = []
    for i in keep_ids[: cfg.max_regions]:
        x, y, bw, bh = stats[i, :4]
        box = np.array([x, y, x + bw - 1, y + bh - 1], np.float32)
        sub = (lab[y:y + bh, x:x + bw] == i) & fg[y:y + bh, x:x + bw]
        ys, xs = np.nonzero(sub)
        coords = np.stack([xs + x, ys + y], 1).astype(np.float32)
        start = int(np.argmax(m[ys + y, xs + x]))
        regions.append(Region(box, _farthest_points(coords, cfg.points_per_region, start)))

    bg = m <= cfg.bg_threshold
    negatives = np.zeros((0, 2), np.float32)
    if bg.any() and cfg.negative_points > 0:
        # prefer background far from anything warm: distance to the box-level region
        dist = cv2.distanceTransform((boxable == 0).astype(np.uint8), cv2.DIST_L2, 3)
        ys, xs = np.nonzero(bg)
        d = dist[ys, xs]
        keep = d >= np.percentile(d, 50)
        coords = np.stack([xs[keep], ys[keep]], 1).astype(np.float32)
        negatives = _farthest_points(coords, cfg.negative_points, int(np.argmax(d[keep])))
    return Prompt(regions, negatives, m, cfg)

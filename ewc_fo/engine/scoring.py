"""Per-explainer scores and score-weighted fusion (formulas and reasons: docs/method.md).

For one image and one class, with maps ``M_k`` (k = 1..K) in [0, 1]:

- concentration ``c_k = 1 - H(p_k) / log N`` with ``p_k = M_k / sum(M_k)`` over N pixels
  (computed on a small grid): a map that puts its mass on few pixels scores high;
- agreement ``a_k = max(0, pearson(M_k, mean_{j != k} M_j))``: does this map say what the
  others say? (leave-one-out, so a map cannot agree with itself);
- quality ``q_k``: the segmenter's quality for the mask prompted by ``M_k`` alone.

``s_k = w_c c_k + w_a a_k + w_q q_k`` and the fusion weights are ``softmax(s / T)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ewc_fo.runtime.errors import ConfigError

GRID = 64  # scores are computed on a GRID x GRID copy: fast and resolution-independent


@dataclass(frozen=True)
class ScoreConfig:
    """Weights of the three score terms and the softmax temperature."""

    # defaults measured on voc_dev (docs/method.md): concentration is computed and stored,
    # but weighting it lowered mIoU, so its default weight is 0
    w_concentration: float = 0.0
    w_agreement: float = 1.0
    w_quality: float = 2.0
    temperature: float = 0.1
    #: multiply the map-mask consistency by the segmenter's own score (SAM2's predicted IoU)
    segmenter_score: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature) or self.temperature <= 0:  # nan zeroed every weight
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if min(self.w_concentration, self.w_agreement, self.w_quality) < 0:
            raise ConfigError("score weights must be >= 0")


def _small(maps: np.ndarray) -> np.ndarray:
    """(K, H, W) -> (K, GRID*GRID) float64 via area resize."""
    out = [cv2.resize(m.astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA) for m in maps]
    return np.stack(out).reshape(len(maps), -1).astype(np.float64)


def concentration(maps: np.ndarray) -> np.ndarray:
    """1 - normalised entropy of each map's mass distribution; 0 for an empty map."""
    m = _small(maps)
    tot = m.sum(1, keepdims=True)
    out = np.zeros(len(m))
    ok = tot[:, 0] > 1e-12
    if ok.any():
        p = m[ok] / tot[ok]
        ent = -(p * np.log(np.where(p > 0, p, 1))).sum(1)
        # clipped: a flat map's entropy is log N up to rounding (found by the property tests)
        out[ok] = np.clip(1.0 - ent / np.log(m.shape[1]), 0.0, 1.0)
    return out


def agreement(maps: np.ndarray) -> np.ndarray:
    """Leave-one-out Pearson correlation with the other maps' mean, clipped at 0.

    With one explainer there is nothing to agree with: returns 1 (neutral).
    """
    m = _small(maps)
    k = len(m)
    if k < 2:
        return np.ones(k)
    total = m.sum(0)
    out = np.zeros(k)
    for i in range(k):
        other = (total - m[i]) / (k - 1)
        out[i] = _pearson(m[i], other)
    return np.clip(out, 0.0, 1.0)


def pairwise_agreement(maps: np.ndarray) -> float:
    """Mean pairwise Pearson correlation (clipped at 0) over explainers: an image-level agreement."""
    m = _small(maps)
    k = len(m)
    if k < 2:
        return 1.0
    vals = [max(0.0, _pearson(m[i], m[j])) for i in range(k) for j in range(i + 1, k)]
    return float(np.mean(vals))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = a.std(), b.std()
    if sa < 1e-12 or sb < 1e-12:
        return 0.0
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def mask_consistency(m: np.ndarray, mask: np.ndarray) -> float:
    """``max(0, share of the map's mass inside the mask - share of the image the mask covers)``.

    How much better than chance the mask explains the evidence that prompted it: a mask
    that covers the whole image captures all the mass but scores 0, and so does an empty one.
    """
    tot = float(m.sum())
    if tot <= 1e-12 or mask.shape != m.shape:
        return 0.0
    return max(0.0, float(m[mask].sum()) / tot - float(mask.mean()))


def combine(
    conc: np.ndarray, agree: np.ndarray, quality: np.ndarray | None, cfg: ScoreConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Return (score s_k, fusion weight softmax(s/T)). ``quality=None`` drops that term."""
    s = cfg.w_concentration * conc + cfg.w_agreement * agree
    if quality is not None:
        s = s + cfg.w_quality * quality
    z = (s - s.max()) / cfg.temperature
    w = np.exp(z)
    return s, w / w.sum()


def fuse(maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum of (K, H, W) maps, renormalised to [0, 1] by its max."""
    f = np.tensordot(weights.astype(np.float32), maps.astype(np.float32), axes=1)
    top = float(f.max())
    return f / top if top > 1e-12 else np.zeros_like(f)


def class_confidence(agreement_c: float, quality: float, fused_c: np.ndarray, mask: np.ndarray,
                     a: float) -> tuple[float, float]:
    """``(mass_inside, confidence)`` of one class's mask (method.md section 6):
    ``agreement^a · sqrt(quality · mass_inside)^(1 − a)``, 0 for an empty mask."""
    total = fused_c.sum()
    mass = float(fused_c[mask].sum() / total) if total > 0 and mask.any() else 0.0
    if not mask.any():
        return mass, 0.0
    return mass, float(agreement_c ** a * float(np.sqrt(max(quality, 0) * mass)) ** (1 - a))

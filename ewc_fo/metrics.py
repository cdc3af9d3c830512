"""Evaluation metrics for pseudo-masks: segmentation quality, confidence usefulness, faithfulness.

Host-agnostic on purpose (numpy in, floats out; torch only for the faithfulness curves), so
the FiftyOne layer, the benchmark scripts and the tests all share one definition of each
number. Definitions and formulas: docs/evaluation.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is only needed by deletion_insertion_auc
    import torch

__all__ = [
    "ConfusionMatrix",
    "sample_iou",
    "spearman",
    "auroc_bad",
    "recall_at_fraction",
    "deletion_insertion_auc",
]


# ---------------------------------------------------------------------------- segmentation


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}; resize pred first")
    return pred.ravel(), gt.ravel()


class ConfusionMatrix:
    """Pixel confusion matrix accumulated over a whole data set.

    ``matrix[g, p]`` counts valid pixels with ground truth ``g`` and prediction ``p``.
    Accumulating over all pixels (not averaging per image) is the standard VOC mIoU.
    Ground-truth pixels equal to ``ignore_index`` are not counted. Predicted values outside
    ``[0, num_classes)`` (e.g. an "uncertain" 255 or an unknown class) are counted in an
    extra column: wrong for the ground-truth class, a false positive for no class.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        # last column: predictions outside [0, num_classes)
        self.matrix = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> ConfusionMatrix:
        """Add one image (or any batch of same-shaped label maps)."""
        p, g = _check_pair(pred, gt)
        c = self.num_classes
        g = g.astype(np.int64, copy=False)
        if self.ignore_index is not None:
            keep = g != self.ignore_index
            p, g = p[keep], g[keep]
        if g.size and (g.min() < 0 or g.max() >= c):
            bad = np.unique(g[(g < 0) | (g >= c)])[:5].tolist()
            raise ValueError(f"ground-truth values {bad} outside [0, {c}) and not ignore_index")
        p = p.astype(np.int64, copy=False)
        p = np.where((p >= 0) & (p < c), p, c)
        self.matrix += np.bincount(g * (c + 1) + p, minlength=c * (c + 1)).reshape(c, c + 1)
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.num_classes != self.num_classes:
            raise ValueError("cannot add confusion matrices of different sizes")
        self.matrix += other.matrix
        return self

    @property
    def n_pixels(self) -> int:
        return int(self.matrix.sum())

    def iou(self) -> np.ndarray:
        """Per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both pred and gt."""
        m = self.matrix
        tp = np.diag(m[:, : self.num_classes]).astype(np.float64)
        fn = m.sum(axis=1) - tp
        fp = m[:, : self.num_classes].sum(axis=0) - tp
        denom = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes present in pred or gt (NaN when there are none)."""
        return _nanmean(self.iou())

    def pixel_accuracy(self) -> float:
        """Share of valid (non-ignored) pixels predicted correctly."""
        n = self.n_pixels
        return float(np.trace(self.matrix[:, : self.num_classes]) / n) if n else math.nan

    def per_class_dict(self, names: Sequence[str] | Mapping[int, str] | None = None) -> dict[str, float]:
        """``{class name: IoU}`` for every class (NaN where absent); ids name themselves if unnamed."""
        ious = self.iou()
        out = {}
        for i, v in enumerate(ious):
            if isinstance(names, Mapping):
                name = names.get(i, str(i))
            elif names is not None and i < len(names):
                name = names[i]
            else:
                name = str(i)
            out[str(name)] = float(v)
        return out


def sample_iou(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int | None = 255) -> float:
    """Mean IoU of one image over the classes present in its gt or pred (valid pixels only).

    This is the per-image quality the confidence score should predict: a class is counted
    when it occurs in the ground truth or the prediction at non-ignored pixels, so both a
    missed object and a hallucinated one lower it. NaN when the image has no valid pixel.
    """
    cm = ConfusionMatrix(num_classes, ignore_index).update(pred, gt)
    return cm.miou()


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else math.nan


# ---------------------------------------------------------------------------- confidence


def _finite_pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"length mismatch: {x.size} vs {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation over the pairs where both values are finite.

    NaN when fewer than 2 such pairs or either side is constant (rank correlation undefined).
    """
    x, y = _finite_pairs(x, y)
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def auroc_bad(confidence, iou, threshold: float = 0.5) -> float:
    """AUROC of ``1 - confidence`` at detecting bad masks (``iou < threshold``).

    0.5 = confidence is useless for triage, 1.0 = every bad mask is less confident than every
    good one. NaN when all masks are bad or all good (AUROC undefined).
    """
    c, v = _finite_pairs(confidence, iou)
    bad = v < threshold
    if bad.all() or not bad.any():
        return math.nan
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(bad.astype(int), 1.0 - c))


def recall_at_fraction(confidence, iou, fraction: float = 0.2, threshold: float = 0.5) -> float:
    """Share of bad masks (``iou < threshold``) found by reviewing the least confident ``fraction``.

    Models the triage workflow: sort ascending by confidence, look at the first
    ``ceil(fraction * n)`` samples. Ties keep data order (stable sort). NaN when no mask is bad.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be in [0, 1]")
    c, v = _finite_pairs(confidence, iou)
    bad = v < threshold
    if not bad.any():
        return math.nan
    k = math.ceil(fraction * c.size - 1e-9)
    order = np.argsort(c, kind="stable")
    return float(bad[order[:k]].sum() / bad.sum())


# ---------------------------------------------------------------------------- faithfulness


def _gaussian_blur(img: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur with edge replication (works for any image size)."""
    import torch
    import torch.nn.functional as F

    radius = max(1, int(round(2 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    c = img.shape[1]
    out = F.pad(img, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def deletion_insertion_auc(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    image_tensor: torch.Tensor,
    saliency: np.ndarray | torch.Tensor,
    target: int,
    steps: int = 16,
    baseline: str | torch.Tensor = "blur",
    batch_size: int = 64,
) -> tuple[float, float]:
    """RISE deletion and insertion AUCs of a saliency map (Petsiuk et al., 2018).

    Pixels are ranked by saliency (highest first). Deletion replaces the top ``k/steps`` share
    of pixels with the baseline, insertion pastes them onto the baseline, for ``k = 0..steps``;
    the AUC of the target probability over x in [0, 1] (trapezoid) is returned. A faithful map
    gives a low deletion and a high insertion AUC. All ``2 * (steps + 1)`` images go through
    ``model_fn`` in batches of ``batch_size``.

    ``model_fn`` maps (N, 3, H, W) to class probabilities (N, num_classes); ``image_tensor`` is
    (3, H, W) or (1, 3, H, W) already preprocessed for the model; ``saliency`` is (H, W) or any
    size (resized bilinearly); ``baseline`` is "blur" (Gaussian, sigma 5), "zero", or a tensor
    shaped like the image.
    """
    import torch
    import torch.nn.functional as F

    from ewc_fo.runtime.errors import ConfigError

    if steps < 1:
        raise ConfigError("steps must be >= 1")
    img = image_tensor.detach()
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.dim() != 4 or img.shape[0] != 1:
        raise ConfigError(f"image_tensor must be (3, H, W) or (1, 3, H, W), got {tuple(image_tensor.shape)}")
    _, _, h, w = img.shape

    sal = torch.as_tensor(np.asarray(saliency, dtype=np.float32) if not torch.is_tensor(saliency) else saliency)
    sal = sal.detach().float().squeeze()
    if sal.dim() != 2:
        raise ConfigError(f"saliency must be 2-D, got shape {tuple(sal.shape)}")
    if sal.shape != (h, w):
        sal = F.interpolate(sal[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]

    if isinstance(baseline, str):
        if baseline == "blur":
            base = _gaussian_blur(img)
        elif baseline == "zero":
            base = torch.zeros_like(img)
        else:
            raise ConfigError(f"baseline must be 'blur', 'zero' or a tensor, not {baseline!r}")
    else:
        base = baseline.detach().to(img).reshape(img.shape)

    n = h * w
    order = torch.argsort(sal.flatten().cpu(), descending=True, stable=True)
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * n / steps).long()
    # masks[k] is True on the top counts[k] pixels
    masks = (rank[None, :] < counts[:, None]).view(steps + 1, 1, h, w).to(img)

    def scores(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
        out = []
        for i in range(0, steps + 1, max(1, batch_size)):
            m = masks[i : i + batch_size]
            batch = first * (1 - m) + second * m
            with torch.no_grad():
                p = model_fn(batch)
            out.append(torch.as_tensor(p)[:, target].detach().float().cpu())
        return torch.cat(out).numpy().astype(np.float64)

    if 2 * (steps + 1) <= batch_size:  # one forward for both curves
        m = masks
        batch = torch.cat([img * (1 - m) + base * m, base * (1 - m) + img * m])
        with torch.no_grad():
            p = torch.as_tensor(model_fn(batch))[:, target].detach().float().cpu().numpy()
        dele, ins = p[: steps + 1].astype(np.float64), p[steps + 1 :].astype(np.float64)
    else:
        dele, ins = scores(img, base), scores(base, img)

    x = np.linspace(0.0, 1.0, steps + 1)
    trapz = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    return float(trapz(dele, x)), float(trapz(ins, x))

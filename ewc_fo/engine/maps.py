"""Pure array steps of the method around the explainers: class competition between the
maps of one image, resizing to the working size, and merging class masks into one label map.

Host-agnostic functions with no state, so the pipeline, the benchmarks and the property tests
all call the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ewc_fo.runtime.errors import ImageLoadError
from ewc_fo.runtime.images import MIN_SIDE, check_not_flat


def compete(maps: np.ndarray, strengths: Sequence[float], amount: float) -> np.ndarray:
    """Let an image's classes (C, H, W) compete for pixels before prompting: class c keeps
    ``max(0, E_c - amount * max_{j != c} E_j)`` of its evidence ``E = M * p / max p``.

    With a classifier fitted on co-occurring labels (rider and horse), each class's map
    also lights up its companions; a pixel another class explains better is not a cue.
    """
    if len(maps) < 2:  # no rival (found by the property tests: np.max of nothing failed)
        return maps.copy()
    st = np.asarray(strengths, np.float32)
    rel = st / max(float(st.max()), 1e-6)
    ev = maps * rel[:, None, None]
    out = np.empty_like(maps)
    for c in range(len(maps)):
        rival = np.delete(ev, c, axis=0).max(0)
        e = np.maximum(ev[c] - amount * rival, 0)
        top = float(e.max())
        out[c] = e / top if top > 1e-12 else 0.0
    return out


def merge(fused: np.ndarray, masks: Sequence[np.ndarray], shape: tuple[int, int],
          strengths: Sequence[float] | None = None) -> np.ndarray:
    """Per-class masks -> one label map; a pixel claimed by several classes goes to the
    class with the most evidence there: its fused value times the class's strength (the
    classifier's probability, relative to the image's strongest class). Each map is
    normalised to its own max, so without the strength a weak class would claim as much as
    a sure one. 0 = background, j + 1 = class j."""
    H, W = shape
    C = len(masks)
    dtype = np.uint8 if C < 255 else np.uint16
    if C == 0:
        return np.zeros((H, W), dtype)
    rel = None
    if strengths is not None:
        st = np.asarray(strengths, np.float32)
        rel = st / max(float(st.max()), 1e-6)
    # one class at a time (a running argmax, first class wins ties like np.argmax): memory
    # is a few full-size planes whatever the number of classes, not C of them
    best_ev = np.full((H, W), -1.0, np.float32)
    label = np.zeros((H, W), dtype)
    for c in range(C):
        f = fused[c]
        ev = cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) if f.shape != (H, W) else f
        if rel is not None:
            ev = ev * rel[c]
        ev = np.where(masks[c], ev + 1e-6, -1.0)  # +eps: a covered pixel beats uncovered ones
        win = ev > best_ev
        best_ev[win] = ev[win]
        label[win] = c + 1
    return label


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """The working copy of an image: longest side at most ``max_side`` (area resampling)."""
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _check_working(image: np.ndarray, work: np.ndarray, max_side: int) -> None:
    """The working copy must still be labelable: not too thin (named with the image's own
    size, not the working copy's) and not one flat colour."""
    if min(work.shape[:2]) < MIN_SIDE:
        raise ImageLoadError(
            f"image is {image.shape[1]}x{image.shape[0]} px: too thin to label (scaled to at most "
            f"{max_side} px a side it is {work.shape[1]}x{work.shape[0]}, under {MIN_SIDE} px)")
    check_not_flat(work)


def _resize_mask(m: np.ndarray, H: int, W: int) -> np.ndarray:
    if m.shape == (H, W):
        return m
    return cv2.resize(m.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)


def gate(maps: np.ndarray, objectness: np.ndarray, alpha: float) -> np.ndarray:
    """Maps (..., h, w) times ``(1 - alpha) + alpha * O``, each renormalised to max 1.

    ``O`` (h, w) is where any object is (objectness.py); a class's evidence on pixels no
    object covers is reduced, so prompts and masks stop at the object. The maps keep their
    shape elsewhere, and an all-zero map stays all-zero.
    """
    g = (1.0 - alpha) + alpha * np.clip(objectness, 0.0, 1.0).astype(np.float32)
    if g.shape != maps.shape[-2:]:
        g = cv2.resize(g, (maps.shape[-1], maps.shape[-2]), interpolation=cv2.INTER_LINEAR)
    out = maps * g
    top = out.max(axis=(-2, -1), keepdims=True)
    return np.where(top > 0, out / np.maximum(top, 1e-12), 0.0).astype(np.float32)


def salient_labels(fused: np.ndarray, objectness: np.ndarray, threshold: float, shape: tuple[int, int],
                   strengths: Sequence[float] | None = None) -> np.ndarray:
    """Label map from objectness: pixels with ``O >= threshold`` go to the class with the most
    evidence (as in :func:`merge`), the rest to background. Every class "claims" the salient
    pixels, so the classes compete for them and nothing else."""
    H, W = shape
    o = cv2.resize(objectness, (W, H), interpolation=cv2.INTER_LINEAR) if objectness.shape != (H, W) \
        else objectness
    salient = o >= threshold
    return merge(fused, [salient] * len(fused), shape, strengths=strengths)


def relabel_instances(mask: np.ndarray, instances: Sequence[tuple[np.ndarray, float]],
                      quality: float) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
    """A class's new mask and its instances cut to it: each instance keeps its part of the mask
    (and its quality); the mask's pixels no instance covers become one more instance."""
    out, covered = [], np.zeros_like(mask)
    for m, q in instances:
        part = m & mask
        if part.any():
            out.append((part, q))
            covered |= part
    rest = mask & ~covered
    if rest.any():
        out.append((rest, quality))
    return mask, out

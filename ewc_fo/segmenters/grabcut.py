"""OpenCV GrabCut seeded from the prompt: the segmenter that needs no weights.

A batch's cuts run on a thread pool; each cut runs one GrabCut iteration per bounded call
so a sample's time budget (and Ctrl-C) can stop it between iterations.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import cv2
import numpy as np

from ewc_fo.runtime.budget import call_bounded, thread_map
from ewc_fo.runtime.device import cpu_count
from ewc_fo.segmenters.base import Prompt, Segmentation, Segmenter

log = logging.getLogger(__name__)


class GrabCutSegmenter(Segmenter):
    """OpenCV GrabCut seeded from the prompt; no weights needed.

    Seeds: outside every (slightly enlarged) box is background; inside, pixels whose map
    value reaches ``box_threshold`` are probable foreground, the rest probable background;
    discs at positive/negative points are certain foreground/background.

    Quality (documented in docs/method.md): ``prompt consistency × colour separation``,
    where consistency is the share of positive points inside and negative points outside
    the mask, and separation is ``1 - Bhattacharyya coefficient`` of the foreground and
    nearby-background colour histograms: a mask whose colours are indistinguishable from
    its surroundings is not trusted.
    """

    name = "grabcut"

    def __init__(self, iterations: int = 4, max_side: int = 320, margin: float = 0.1, seed: int = 0,
                 draft_iterations: int = 2, draft_side: int = 160):
        self.iterations = iterations
        self.max_side = max_side
        self.draft_iterations = draft_iterations
        self.draft_side = draft_side
        self.margin = margin
        self.seed = seed

    def set_image(self, image: np.ndarray) -> None:
        self._full = image.shape[:2]
        self._levels = {False: self._level(image, self.max_side, self.iterations),
                        True: self._level(image, self.draft_side, self.draft_iterations)}
        self._dominant = {k: _dominant_colour(v[0]) for k, v in self._levels.items()}

    @staticmethod
    def _level(image: np.ndarray, side: int, iterations: int) -> tuple:
        """(RGB image, its BGR copy, scale from full size, iterations) at ``side`` px at most."""
        h, w = image.shape[:2]
        scale = min(1.0, side / max(h, w))
        img = image
        if scale < 1:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            img = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return img, np.ascontiguousarray(img[..., ::-1]), scale, iterations

    def segment_many(self, prompts: list[Prompt], draft: bool = False) -> list[Segmentation]:
        if getattr(self, "_levels", None) is None:
            raise RuntimeError("call set_image(image) before segment_many(prompts)")
        level = self._levels[bool(draft)]
        self._mode_mask = self._dominant[bool(draft)]
        return [self._one(p, *level) for p in prompts]

    def _one(self, p: Prompt, img: np.ndarray, bgr: np.ndarray, s: float, iterations: int) -> Segmentation:
        H, W = self._full
        res = Segmentation(shape=(H, W))
        if p.empty:
            return res
        h, w = img.shape[:2]
        r = max(1, int(round(0.015 * max(h, w))))
        box_thr = p.config.box_threshold if p.config else 0.3
        soft = cv2.resize(p.soft, (w, h), interpolation=cv2.INTER_LINEAR) if p.soft is not None else None
        gc = np.full((h, w), cv2.GC_BGD, np.uint8)
        for reg in p.regions:
            x0, y0, x1, y1 = reg.box * s
            mx, my = self.margin * (x1 - x0 + 1), self.margin * (y1 - y0 + 1)
            X0, Y0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
            X1, Y1 = int(min(w - 1, x1 + mx)), int(min(h - 1, y1 + my))
            sub = gc[Y0:Y1 + 1, X0:X1 + 1]
            if soft is not None:
                hot = soft[Y0:Y1 + 1, X0:X1 + 1] >= box_thr
                sub[:] = np.where(hot, cv2.GC_PR_FGD, np.maximum(sub, cv2.GC_PR_BGD))
            else:
                sub[:] = cv2.GC_PR_FGD
        for reg in p.regions:
            for x, y in reg.points * s:
                cv2.circle(gc, (int(x), int(y)), r, cv2.GC_FGD, -1)
        for x, y in p.negatives * s:
            cv2.circle(gc, (int(x), int(y)), r, cv2.GC_BGD, -1)
        fgish = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))
        if fgish.all() or not fgish.any() or _one_colour_both_sides(getattr(self, "_mode_mask", None), fgish):
            mask = fgish  # nothing for colour models to separate: keep the seeds
        else:
            try:
                self._grabcut(bgr, gc, iterations)
            except cv2.error as e:  # degenerate seeds (e.g. a single colour): keep the seeds
                log.debug("grabcut failed: %s", e)
            mask = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))
        sep = self._separation(mask, img)
        # one instance per region: the mask's connected parts that touch that region's box
        n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        used = np.zeros(n, bool)
        for reg in p.regions:
            x0, y0, x1, y1 = (reg.box * s).astype(int)
            ids = np.unique(lab[max(0, y0):y1 + 1, max(0, x0):x1 + 1])
            ids = [i for i in ids if i > 0 and not used[i]]
            if not ids:
                continue
            used[ids] = True
            inst = np.isin(lab, ids)
            q = self._consistency(inst, reg.points * s, p.negatives * s) * sep
            res.masks.append(self._upsample(inst))
            res.qualities.append(float(q))
        return res

    def _grabcut(self, bgr: np.ndarray, gc: np.ndarray, iterations: int) -> None:
        """``cv2.grabCut`` on ``gc`` in place, one iteration per call, under :func:`call_bounded`.

        Iterating with ``GC_EVAL`` continues from the colour models the previous call left
        in ``bgd``/``fgd``: the result is bit-identical to one call with all iterations
        (tested), but the sample's deadline and Ctrl-C are honoured between iterations,
        and at once even if one iteration never returns (it runs in a daemon thread).
        """

        def work(stop):
            cv2.setRNGSeed(self.seed)  # GMM init is random (per-thread RNG): keep runs deterministic
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            for i in range(iterations):
                if stop.is_set():
                    return
                cv2.grabCut(bgr, gc, None, bgd, fgd, 1, cv2.GC_EVAL if i else cv2.GC_INIT_WITH_MASK)

        call_bounded(work, self.deadline, "GrabCut")

    def _upsample(self, m: np.ndarray) -> np.ndarray:
        H, W = self._full
        if m.shape == (H, W):
            return m
        return cv2.resize(m.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)

    @staticmethod
    def _consistency(mask: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
        h, w = mask.shape

        def inside(pts):
            if not len(pts):
                return np.zeros(0, bool)
            xi = np.clip(pts[:, 0].astype(int), 0, w - 1)
            yi = np.clip(pts[:, 1].astype(int), 0, h - 1)
            return mask[yi, xi]

        hits = list(inside(pos)) + list(~inside(neg))
        return float(np.mean(hits)) if hits else 0.0

    @staticmethod
    def _separation(mask: np.ndarray, img: np.ndarray) -> float:
        if not mask.any() or mask.all():
            return 0.0
        k = max(3, round(0.025 * max(mask.shape)) | 1)  # a ring ~5 % of the image side wide
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8), iterations=2).astype(bool) & ~mask
        if not ring.any():
            ring = ~mask
        q = (img // 32).astype(np.int32)
        idx = q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]
        hf = np.bincount(idx[mask], minlength=512).astype(np.float64)
        hb = np.bincount(idx[ring], minlength=512).astype(np.float64)
        bc = np.sqrt(hf / hf.sum() * hb / hb.sum()).sum()
        return float(np.clip(1.0 - bc, 0.0, 1.0))

    def describe(self) -> dict:
        return {"name": self.name, "iterations": self.iterations, "max_side": self.max_side,
                "draft_iterations": self.draft_iterations, "draft_side": self.draft_side}

    # ------------------------------------------------------------ a batch on a thread pool

    #: threads for :meth:`segment_images`; None = every core this process may use.
    #: Results do not depend on it: each cut seeds OpenCV's RNG, which is per thread.
    workers: int | None = None

    def set_images(self, images: Sequence[np.ndarray]) -> None:
        """One prepared copy of this segmenter per image, so threads share no state."""
        views = []
        for im in images:
            v = copy.copy(self)
            v._views = None
            v.set_image(im)
            views.append(v)
        self._views = views

    def segment_images(self, prompts: Sequence[Sequence[Prompt]], draft: bool = False) -> list[list[Segmentation]]:
        """Every (image, prompt) cut of the batch on a thread pool (OpenCV frees the GIL);
        :func:`thread_map`, so Ctrl-C stops it even while a cut is stuck in C code."""
        views = getattr(self, "_views", None)
        if views is None:
            raise RuntimeError("call set_images(images) before segment_images(prompts)")
        if len(prompts) != len(views):
            raise ValueError(f"{len(prompts)} prompt lists for {len(views)} images")
        tasks = [(i, p) for i, ps in enumerate(prompts) for p in ps]

        def cut(task):
            i, p = task
            return views[i].segment_many([p], draft=draft)[0]

        done = thread_map(cut, tasks, self.workers or cpu_count(), name="grabcut")
        out, k = [], 0
        for ps in prompts:
            out.append(done[k:k + len(ps)])
            k += len(ps)
        return out


#: share of an image's pixels one exact colour must reach before GrabCut's colour models
#: can degenerate (see :func:`_one_colour_both_sides`)
DOMINANT_SHARE = 0.9


def _dominant_colour(img: np.ndarray) -> np.ndarray | None:
    """Pixels of ``img``'s most frequent exact colour, if it covers ``DOMINANT_SHARE`` of it."""
    a = img.reshape(-1, 3).astype(np.int32)
    codes = (a[:, 0] << 16) | (a[:, 1] << 8) | a[:, 2]
    vals, counts = np.unique(codes, return_counts=True)
    top = int(counts.argmax())
    if counts[top] < DOMINANT_SHARE * len(codes):
        return None
    return (codes == vals[top]).reshape(img.shape[:2])


def _one_colour_both_sides(mode_mask: np.ndarray | None, fgish: np.ndarray) -> bool:
    """True when one exact colour fills ``DOMINANT_SHARE`` of both the foreground seeds and
    the background: the guard that keeps ``cv2.grabCut`` from hanging.

    Measured (OpenCV 4, 320x256, a real prompt): on a flat grey 200 image, or flat with a
    20-px textured patch or a single odd pixel, the second GrabCut iteration did not
    return within 5 minutes; both sides' Gaussian mixtures get a zero-variance component
    at the same colour. A flat object on a textured background, two flat colours, or a
    flat image with +-1 noise all finish in under 2 s, so only the shared dominant
    colour is refused. Colour cannot separate such seeds anyway: the seeds are the mask.
    """
    if mode_mask is None or mode_mask.shape != fgish.shape:
        return False
    return bool(mode_mask[fgish].mean() >= DOMINANT_SHARE and mode_mask[~fgish].mean() >= DOMINANT_SHARE)



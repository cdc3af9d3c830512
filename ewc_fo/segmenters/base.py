"""What every segmenter shares: its input (:class:`Prompt`), its output (:class:`Segmentation`)
and the interface (:class:`Segmenter`).

Two ways in: ``set_image`` + ``segment_many`` (one image), or ``set_images`` +
``segment_images`` (a batch; what :class:`~ewc_fo.engine.pipeline.EWC` uses). Backends
override the batch path to share work (one image-encoder pass for a batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ewc_fo.runtime.budget import Deadline


@dataclass
class Region:
    """One object region: its box (x0, y0, x1, y1, pixel coords) and positive points (x, y)."""

    box: np.ndarray
    points: np.ndarray


@dataclass
class Prompt:
    """Everything a segmenter gets for one class on one image."""

    regions: list[Region]
    negatives: np.ndarray  # (N, 2) xy
    soft: np.ndarray | None = field(default=None, repr=False)  # the map (GrabCut uses it)
    config: Any = field(default=None, repr=False)  # the engine's PromptConfig

    @property
    def empty(self) -> bool:
        return not self.regions



@dataclass
class Segmentation:
    """Masks for one prompt: one boolean (H, W) mask and quality per region (instance)."""

    masks: list[np.ndarray] = field(default_factory=list)
    qualities: list[float] = field(default_factory=list)
    shape: tuple[int, int] = (0, 0)

    @property
    def mask(self) -> np.ndarray:
        """Union of the region masks."""
        out = np.zeros(self.shape, bool)
        for m in self.masks:
            out |= m
        return out

    @property
    def quality(self) -> float:
        """Area-weighted mean quality of the regions (0 for an empty result)."""
        areas = np.array([m.sum() for m in self.masks], np.float64)
        if not len(areas) or areas.sum() == 0:
            return 0.0
        return float((areas * np.asarray(self.qualities)).sum() / areas.sum())


class Segmenter:
    """Interface: ``set_image(image)`` once, then ``segment_many(prompts)`` any number of times."""

    name = "segmenter"
    #: the current sample's time budget (set by :class:`~ewc_fo.engine.pipeline.EWC`
    #: around each sample); backends that can stop between steps check it there
    deadline: Deadline | None = None

    def set_image(self, image: np.ndarray) -> None:
        self._image = image

    def segment(self, prompt: Prompt) -> Segmentation:
        return self.segment_many([prompt])[0]

    def segment_many(self, prompts: list[Prompt], draft: bool = False) -> list[Segmentation]:
        """Masks for every prompt on the current image.

        ``draft=True`` allows a cheaper, lower-fidelity run: EWC uses it for the per-explainer
        quality prompts, whose masks only serve to score the explainers.
        """
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name}

    # A batch of images at once. EWC segments in two rounds (each explainer's prompts,
    # then the fused ones), so the batch is set once and decoded twice. The defaults go
    # image by image; backends override them to share work across the batch.

    def set_images(self, images: Sequence[np.ndarray]) -> None:
        """Prepare a whole batch (SAM2: one image-encoder pass for all of it)."""
        self._batch_images = list(images)

    def segment_images(self, prompts: Sequence[Sequence[Prompt]], draft: bool = False) -> list[list[Segmentation]]:
        """``prompts[i]`` on image i of the last :meth:`set_images`; one list per image."""
        images = getattr(self, "_batch_images", None)
        if images is None:
            raise RuntimeError("call set_images(images) before segment_images(prompts)")
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompt lists for {len(images)} images")
        out = []
        for im, ps in zip(images, prompts):
            self.set_image(im)
            out.append(self.segment_many(list(ps), draft=draft))
        return out

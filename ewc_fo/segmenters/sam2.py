"""The SAM2 backend: ``SAM2ImagePredictor`` with a batch-wide path.

- one image-encoder pass per *batch* of images (``set_image_batch``), then every prompt
  of every image decoded through ``predict_batch``: one mask-decoder call per image,
  all regions of all that image's prompts together (the fewest the predictor allows);
- everything under ``torch.inference_mode`` and, on a GPU, bfloat16 autocast;
- ``compile=True`` wraps the image encoder in ``torch.compile`` (worth it only if it
  measures faster after warm-up: ``benchmarks/gpu.py --compile``).

The single-image path (``set_image`` + ``segment_many``) stays for callers that embed
one image at a time; both give the same masks (tests/engine/test_sam2_batch.py).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ewc_fo.runtime.device import autocast, autocast_dtype
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters.base import Prompt, Segmentation, Segmenter

SAM2_DEFAULT_MODEL = "facebook/sam2.1-hiera-tiny"
SAM2_TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


class SAM2Segmenter(Segmenter):
    """SAM2 through ``SAM2ImagePredictor``: one embedding per image, all prompts batched."""

    name = "sam2"

    def __init__(self, predictor, source: str = "custom", precision: str = "auto", compile: bool = False):
        self.predictor = predictor
        self.source = source
        self.precision = precision
        self._amp = autocast_dtype(self.device, precision)
        self._shapes: list[tuple[int, int]] | None = None
        self._batched = False
        if compile:
            self.compile_encoder()

    @property
    def device(self) -> torch.device:
        return torch.device(self.predictor.device)

    def compile_encoder(self) -> None:
        """``torch.compile`` the image encoder (the costly part); the first batch pays the compile."""
        model = self.predictor.model
        model.image_encoder = torch.compile(model.image_encoder)

    def _ctx(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(autocast(self.device, self._amp))
        return stack

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike | None, config: str = SAM2_TINY_CONFIG,
                        device: str = "cpu", **kw) -> SAM2Segmenter:
        """Build from a local checkpoint + its config; ``checkpoint=None`` = random weights (tests)."""
        with warnings.catch_warnings():  # sam2 calls the deprecated torch.jit.script on import
            warnings.simplefilter("ignore", FutureWarning)
            from sam2.build_sam import build_sam2
            from sam2.sam2_image_predictor import SAM2ImagePredictor

        if checkpoint is not None and not Path(checkpoint).is_file():
            raise ConfigError(f"SAM2 checkpoint not found: {checkpoint}")
        try:
            with warnings.catch_warnings():  # torch.jit.script deprecation inside sam2
                warnings.simplefilter("ignore", FutureWarning)
                model = build_sam2(config, str(checkpoint) if checkpoint else None, device=str(device))
                predictor = SAM2ImagePredictor(model)
        except Exception as e:
            raise ConfigError(f"cannot build SAM2 from config {config!r} and {checkpoint}: {e}") from None
        src = str(checkpoint) if checkpoint else f"random-init:{config}"
        return cls(predictor, src, **kw)

    @classmethod
    def from_pretrained(cls, model_id: str = SAM2_DEFAULT_MODEL, device: str = "cpu", **kw) -> SAM2Segmenter:
        """Download (once, cached by huggingface_hub) and build a SAM2 model by hub id."""
        with warnings.catch_warnings():  # sam2 calls the deprecated torch.jit.script on import
            warnings.simplefilter("ignore", FutureWarning)
            from sam2.sam2_image_predictor import SAM2ImagePredictor

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                pred = SAM2ImagePredictor.from_pretrained(model_id, device=str(device))
        except Exception as e:
            raise ConfigError(f"cannot load SAM2 {model_id!r} (offline, or unknown id?): {e}") from None
        return cls(pred, model_id, **kw)

    # ------------------------------------------------------------ one image

    def set_image(self, image: np.ndarray) -> None:
        self._shapes, self._batched = [image.shape[:2]], False
        with self._ctx():
            self.predictor.set_image(image)

    def segment_many(self, prompts: list[Prompt], draft: bool = False) -> list[Segmentation]:
        # draft is ignored: decoding from the shared embedding is already cheap
        if self._shapes is None or self._batched:
            raise RuntimeError("call set_image(image) before segment_many(prompts)")
        h, w = self._shapes[0]
        packed = _pack(prompts)
        if packed is None:
            return [Segmentation(shape=(h, w)) for _ in prompts]
        pc, pl, boxes, _ = packed
        with self._ctx():
            masks, ious, _ = self.predictor.predict(
                point_coords=pc, point_labels=pl, box=boxes, multimask_output=False)
        return _unpack(prompts, packed, masks, ious, (h, w))

    # ------------------------------------------------------------ a batch of images

    def set_images(self, images: Sequence[np.ndarray]) -> None:
        """ONE image-encoder pass for the whole batch (``set_image_batch``)."""
        images = [im if im.flags.c_contiguous and im.flags.writeable else np.array(im) for im in images]
        self._shapes, self._batched = [im.shape[:2] for im in images], True
        if not images:
            return
        with self._ctx():
            self.predictor.set_image_batch(images)

    def segment_images(self, prompts: Sequence[Sequence[Prompt]], draft: bool = False) -> list[list[Segmentation]]:
        """Every prompt of every image in one ``predict_batch`` call (one decoder call per image)."""
        if self._shapes is None or not self._batched:
            raise RuntimeError("call set_images(images) before segment_images(prompts)")
        if len(prompts) != len(self._shapes):
            raise ValueError(f"{len(prompts)} prompt lists for {len(self._shapes)} images")
        packs = [_pack(list(ps)) for ps in prompts]
        out = [[Segmentation(shape=hw) for _ in ps] for ps, hw in zip(prompts, self._shapes)]
        if all(p is None for p in packs):
            return out
        # an image with nothing to decode still gets one (empty-prompt) decode from
        # predict_batch, which walks every embedded image; its result is dropped
        with self._ctx():
            masks, ious, _ = self.predictor.predict_batch(
                [p[0] if p else None for p in packs], [p[1] if p else None for p in packs],
                [p[2] if p else None for p in packs], multimask_output=False)
        for i, (ps, p, hw) in enumerate(zip(prompts, packs, self._shapes)):
            if p is not None:
                out[i] = _unpack(list(ps), p, masks[i], ious[i], hw)
        return out

    def describe(self) -> dict:
        return {"name": self.name, "checkpoint": self.source}


def _pack(prompts: list[Prompt]):
    """All regions of ``prompts`` as SAM2 arrays: (points, labels, boxes, owner) or None.

    Each region is one SAM2 query: its box, its positive points and the prompt's
    negatives; rows are padded with label -1, which SAM ignores.
    """
    boxes, points, labels, owner = [], [], [], []
    for j, p in enumerate(prompts):
        for r in p.regions:
            pts = np.concatenate([r.points, p.negatives]) if len(p.negatives) else r.points
            boxes.append(r.box)
            points.append(pts)
            labels.append(np.r_[np.ones(len(r.points)), np.zeros(len(p.negatives))])
            owner.append(j)
    if not boxes:
        return None
    n = max(1, max(len(p) for p in points))
    pc = np.zeros((len(points), n, 2), np.float32)
    pl = -np.ones((len(points), n), np.float32)
    for i, (pt, lb) in enumerate(zip(points, labels)):
        pc[i, : len(pt)] = pt
        pl[i, : len(lb)] = lb
    return pc, pl, np.stack(boxes).astype(np.float32), owner


def _unpack(prompts, packed, masks, ious, hw) -> list[Segmentation]:
    h, w = hw
    owner = packed[3]
    out = [Segmentation(shape=(h, w)) for _ in prompts]
    masks = np.asarray(masks).reshape(len(owner), -1, h, w)[:, 0] > 0
    ious = np.asarray(ious, np.float32).reshape(len(owner), -1)[:, 0]
    for i, j in enumerate(owner):
        out[j].masks.append(masks[i])
        out[j].qualities.append(float(np.clip(ious[i], 0, 1)))
    return out

"""Label images with a trained segmentation model alone (issue 21): one forward pass per image
(and one for its mirror), yet the same :class:`~ewc_fo.engine.results.ImageResult` an EWC run
gives, so the FiftyOne layer writes the same fields, files, record and triage views, and
resumes the same way.

The confidence comes from the model's own per-pixel probabilities (docs/distill.md): for each
labeled class, the *soft IoU* between its probability map ``P`` and the mask ``M`` it wins,
``Σ_M P / (|M| + Σ_{¬M} P)`` — the IoU the mask would have if ``P`` were the truth, low when
the mask is uncertain inside or leaves probability outside; 0 for a labeled class that wins
no pixel. The image's confidence is the lowest over its classes, as for EWC. The agreement is
how well the predictions on the image and on its mirror agree (mean per-class IoU).
Only the image's own labeled classes (and background) compete at each pixel, as in EWC.

On a CPU the network runs on ONNX Runtime (``runtime="auto"``): the model is exported once
when the labeler is built (seconds) and its forward pass is then several times faster than
PyTorch's on this depthwise-convolution network (docs/distill.md has the measurement).
``runtime="torch"`` keeps PyTorch; a GPU always uses it. The runtime is part of the run's
recorded settings, so a resumed run computes with the one that started it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ewc_fo.engine.maps import _check_working, _resize_mask, downscale
from ewc_fo.engine.results import ClassResult, ImageResult
from ewc_fo.models.seg_checkpoint import load_seg_model
from ewc_fo.models.seg_train import prepare_image
from ewc_fo.runtime.budget import Limits
from ewc_fo.runtime.device import resolve_device
from ewc_fo.runtime.errors import (
    ConfigError,
    EWCError,
    NoLabelError,
    TooManyClassesError,
    UnknownClassError,
)
from ewc_fo.runtime.images import check_image

#: instances smaller than this share of the working image are dropped (speckle)
MIN_INSTANCE = 1e-3


@dataclass
class SegClasses:
    """What the label run asks of a "classifier": its class names, lookup and device."""

    class_names: list[str]
    device: torch.device
    name: str = "segnet"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {c: i for i, c in enumerate(self.class_names)}

    def class_index(self, name: str | int) -> int:
        if isinstance(name, (int, np.integer)) and 0 <= int(name) < len(self.class_names):
            return int(name)
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise UnknownClassError(
                f"class {name!r} is unknown to segmentation model {self.name!r} (knows: "
                f"{', '.join(self.class_names[:8])}); train it on a run with that class") from None


class SegModelLabeler:
    """An engine with EWC's ``run``/``describe``/``explainers`` over a trained SegNet."""

    def __init__(self, path: str, *, device: str | torch.device = "cpu", flip: bool = True,
                 max_side: int = 640, limits: Limits | None = None, pretrained: bool = True,
                 runtime: str = "auto"):
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        self.device = resolve_device(device)
        self.model, self.meta = load_seg_model(path, device=self.device, pretrained=pretrained)
        self.path = str(Path(path).resolve())
        self.flip = bool(flip)
        self.max_side = int(max_side)
        self.limits = limits or Limits()
        self.input_size = int(self.meta["input_size"])
        self.name = f"segnet:{Path(path).name}"
        self.clf = SegClasses(list(self.meta["class_names"]), self.device, self.name, self.meta)
        self.explainers: list = []
        self.session = None
        if runtime != "torch" and self.device.type == "cpu":
            self.session = _ort_session(self.model, self.input_size, strict=runtime == "onnxruntime")
        self.runtime = "onnxruntime" if self.session is not None else "torch"

    def describe(self) -> dict:
        keep = ("format", "backbone", "class_names", "input_size", "width", "run", "n_samples", "seed",
                "train", "weighting", "ewc_fo_version")
        return {
            "classifier": {"name": self.name, **{k: self.meta[k] for k in keep if k in self.meta}},
            "segmenter": {"name": "segnet", "path": self.path},
            "config": {"flip": self.flip, "max_side": self.max_side, "confidence": "soft_iou",
                       "runtime": self.runtime},
            "explainers": [],
        }

    def run(self, images: Sequence[np.ndarray], classes: Sequence[Sequence[str | int]], *,
            errors: str = "raise") -> list:
        out: list = [None] * len(images)
        ok, ids, work = [], {}, {}
        for i, (im, cs) in enumerate(zip(images, classes)):
            try:
                ids[i] = self._class_ids(cs)
                check_image(im)
                work[i] = downscale(im, self.max_side)
                _check_working(im, work[i], self.max_side)
                ok.append(i)
            except EWCError as e:
                if errors == "raise":
                    raise
                out[i] = e
        if not ok:
            return out
        probs = self._probabilities([work[i] for i in ok])
        for i, p in zip(ok, probs):
            out[i] = self._result(images[i], work[i], p, ids[i])
        return out

    def _class_ids(self, cs) -> list[int]:
        if isinstance(cs, (str, int, np.integer)):
            cs = [cs]
        if cs is None or not len(cs):
            raise NoLabelError("an image has no image-level label to segment")
        got = list(dict.fromkeys(self.clf.class_index(c) for c in cs))
        if len(got) > self.limits.max_classes:
            raise TooManyClassesError(f"the sample has {len(got)} image-level classes; at most "
                                      f"{self.limits.max_classes} per image are labeled")
        return got

    @torch.inference_mode()
    def _probabilities(self, work: Sequence[np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Softmax-ready logits at stride 8 of each image, and of its mirror (flipped back)."""
        x = torch.cat([prepare_image(w, self.input_size, self.device) for w in work])
        logits = self._forward(x)
        flipped = torch.flip(self._forward(torch.flip(x, dims=[-1])), dims=[-1]) if self.flip else None
        return [(logits[k].float().cpu(), None if flipped is None else flipped[k].float().cpu())
                for k in range(len(work))]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.session is None:
            return self.model(x)
        return torch.from_numpy(self.session.run(None, {"x": x.contiguous().numpy()})[0])

    def _result(self, image: np.ndarray, work: np.ndarray, logits, class_ids: list[int]) -> ImageResult:
        plain, mirror = logits
        h, w = work.shape[:2]
        H, W = image.shape[:2]
        chans = [0] + [c + 1 for c in class_ids]

        def probs(lg: torch.Tensor) -> np.ndarray:
            p = torch.softmax(lg[chans], 0)[None]
            p = torch.nn.functional.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)[0]
            return p.numpy()

        p = probs(plain)
        agreement = 1.0
        if mirror is not None:
            q = probs(mirror)
            agreement = _mean_iou(p.argmax(0), q.argmax(0), len(class_ids))
            p = (p + q) / 2
        lab = p.argmax(0)
        results = []
        for j, c in enumerate(class_ids):
            P, M = p[j + 1], lab == j + 1
            inside, total = float(P[M].sum()), float(P.sum())
            soft_iou = inside / (float(M.sum()) + total - inside) if M.any() else 0.0
            insts = _instances(M, P, H, W)
            results.append(ClassResult(
                class_index=c, class_name=self.clf.class_names[c], probability=float(P.max(initial=0.0)),
                mask=_resize_mask(M, H, W), instances=insts, quality=soft_iou,
                mass_inside=inside / total if total > 0 else 0.0, confidence=soft_iou, scores={},
                empty=not M.any(),
            ))
        label_map = cv2.resize(lab.astype(np.uint8 if len(chans) < 256 else np.uint16), (W, H),
                               interpolation=cv2.INTER_NEAREST) if (h, w) != (H, W) else lab
        fused = np.ascontiguousarray(p[1:], dtype=np.float32)
        return ImageResult(results, label_map.astype(np.uint16 if len(chans) >= 256 else np.uint8),
                           np.zeros((0, *fused.shape), np.float32), fused, [], float(agreement),
                           min((r.confidence for r in results), default=0.0))


#: how the network runs: ONNX Runtime on a CPU when it can be exported, else PyTorch
RUNTIMES = ("auto", "onnxruntime", "torch")


def _ort_session(model: torch.nn.Module, size: int, strict: bool = False):
    """An ONNX Runtime session of ``model`` (exported in memory), with torch's thread count;
    None when the export is not possible here (no ``onnx`` package) and not ``strict``."""
    try:
        import onnxruntime as ort

        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), buf, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False)
    except Exception as e:  # noqa: BLE001  (no onnx package, an exporter that cannot: PyTorch then)
        if strict:
            raise ConfigError(f"cannot run the segmentation model on ONNX Runtime: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from None
        return None
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


def _mean_iou(a: np.ndarray, b: np.ndarray, n: int) -> float:
    ious = []
    for k in range(1, n + 1):
        x, y = a == k, b == k
        u = np.logical_or(x, y).sum()
        ious.append(1.0 if u == 0 else float(np.logical_and(x, y).sum()) / float(u))
    return float(np.mean(ious)) if ious else 1.0


def _instances(mask: np.ndarray, prob: np.ndarray, H: int, W: int) -> list[tuple[np.ndarray, float]]:
    """Connected regions of a class's mask, each with its mean probability."""
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = max(1, int(MIN_INSTANCE * mask.size))
    out = []
    for k in range(1, n):
        if stats[k, cv2.CC_STAT_AREA] < keep:
            continue
        m = comp == k
        out.append((_resize_mask(m, H, W), float(prob[m].mean())))
    return out

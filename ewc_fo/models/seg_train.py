"""Train a :class:`~ewc_fo.models.segnet.SegNet` on masks with per-pixel trust weights.

Two phases, both on cached encoder features (the encoder's first stages stay frozen, so an
image is encoded once, and once mirrored):

1. ``epochs`` of the decoder alone on cached stride-8/16/32 features (seconds per epoch);
2. ``tune_epochs`` of the decoder and the stride-32 stage together, from the cached
   stride-8/16 features (the "lightly tuned" encoder; BatchNorm statistics stay frozen).

Each training mask comes with a weight per label value (``weights[k]`` for the pixels of label
``k``; 0 leaves them out): the FiftyOne layer derives them from the run's confidence and the
reviewers' verdicts (docs/distill.md). The loss is the weighted per-pixel cross-entropy
averaged over all pixels of a batch, so a low-trust image pulls less than a trusted one.

Deterministic for a seed and a thread count: the order, the initialisation and the flips all
come from one seeded generator. Host-agnostic: paths and arrays in, model out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ewc_fo.models.segnet import LiteEncoder, SegNet, normalise
from ewc_fo.runtime.device import cpu_count
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.images import load_image
from ewc_fo.runtime.limits import check_input_size

#: the loss is computed at a quarter of the input side (logits upsampled 2x from stride 8)
LOSS_STRIDE = 4


@dataclass
class SegTrainConfig:
    """The knobs of :func:`train_segnet`; recorded in the checkpoint."""

    input_size: int = 320
    width: int = 64
    epochs: int = 20
    tune_epochs: int = 0
    lr: float = 3e-3
    tune_lr: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 8
    flip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            check_input_size(self.input_size, "input_size")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.input_size % 32:
            raise ConfigError(f"input_size must be a multiple of 32 (the encoder's stride), got {self.input_size}")
        for k in ("width", "epochs", "batch_size"):
            if int(getattr(self, k)) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.tune_epochs < 0:
            raise ConfigError(f"tune_epochs must be >= 0, got {self.tune_epochs}")


@dataclass
class SegTrainResult:
    model: SegNet
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    threads: int = 1


def prepare_image(image: np.ndarray, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, size, size) normalised, resized as the classifier does (antialiased)."""
    a = np.ascontiguousarray(image)
    if not a.flags.writeable:  # np.asarray(PIL image) is read-only; torch warns on those
        a = a.copy()
    t = torch.from_numpy(a).to(device).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return normalise(t.clamp(0, 255))


def _target(mask: np.ndarray, weights: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    small = cv2.resize(mask.astype(np.uint16), (side, side), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    return small, weights[small].astype(np.float32)


@dataclass
class Encoded:
    """The frozen encoder's stride-8/16/32 features of images (row 1: the mirrored image)."""

    f8: list[torch.Tensor]
    f16: list[torch.Tensor]
    f32: list[torch.Tensor]
    input_size: int
    flip: bool

    def subset(self, idx: Sequence[int]) -> Encoded:
        return Encoded([self.f8[i] for i in idx], [self.f16[i] for i in idx], [self.f32[i] for i in idx],
                       self.input_size, self.flip)


def encode_images(
    paths: Sequence[str | os.PathLike],
    config: SegTrainConfig | None = None,
    *,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    verbose: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Encoded:
    """Encode images once with the frozen encoder (reusable by several trainings: cross-fitting).

    ``progress(k)``: called after each image with the number of images encoded so far."""
    cfg = config or SegTrainConfig()
    torch.manual_seed(cfg.seed)  # the same encoder train_segnet builds, pretrained or not
    enc = LiteEncoder(pretrained).to(device).eval()
    f8s, f16s, f32s = [], [], []
    with torch.inference_mode():
        for p in tqdm(paths, disable=not verbose, desc="encode", unit="img"):
            x = prepare_image(load_image(os.fspath(p)), cfg.input_size, device)
            if cfg.flip:
                x = torch.cat([x, torch.flip(x, dims=[-1])])
            f8, f16 = enc.forward_low(x)
            f8s.append(f8.cpu())
            f16s.append(f16.cpu())
            f32s.append(enc.forward_high(f16).cpu())
            if progress is not None:
                progress(len(f8s))
    return Encoded(f8s, f16s, f32s, cfg.input_size, cfg.flip)


def train_segnet(
    paths: Sequence[str | os.PathLike],
    masks: Sequence[np.ndarray] | Callable[[int], np.ndarray],
    weights: Sequence[np.ndarray],
    num_classes: int,
    config: SegTrainConfig | None = None,
    *,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    pretrained: bool = True,
    encoded: Encoded | None = None,
    verbose: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SegTrainResult:
    """Train a SegNet on ``paths`` and their label maps.

    ``masks[i]`` (or ``masks(i)``) is image ``i``'s label map at any size (0 = background,
    ``k`` = class ``k - 1``); ``weights[i]`` has ``num_classes + 1`` entries, the trust of
    each label's pixels. ``threads``: torch threads (default: every core this process may use).
    ``encoded``: these images' :func:`encode_images` output, if already computed.
    ``progress(done, total)``: counted in image passes (encoding each image, then each image
    of each epoch), so ``done / total`` is the share of the work and a rate is images/s.
    """
    cfg = config or SegTrainConfig()
    if len(paths) != len(weights):
        raise ConfigError(f"{len(paths)} images but {len(weights)} weight vectors")
    if not len(paths):
        raise ConfigError("no training images")
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    n_threads = int(threads or cpu_count())
    torch.set_num_threads(n_threads)
    try:
        torch.manual_seed(cfg.seed)
        g = torch.Generator().manual_seed(cfg.seed)
        model = SegNet(num_classes, cfg.width, pretrained).to(device)
        side = cfg.input_size // LOSS_STRIDE
        ys, ws = [], []
        for i in range(len(paths)):
            m = masks(i) if callable(masks) else masks[i]
            w = np.asarray(weights[i], np.float32)
            if w.shape != (num_classes + 1,):
                raise ConfigError(f"weights[{i}] must have {num_classes + 1} entries, got {w.shape}")
            if int(m.max(initial=0)) > num_classes:
                raise ConfigError(f"mask {i} has label {int(m.max())} but the model has {num_classes} classes")
            y, wy = _target(m, w, side)
            ys.append(y)
            ws.append(wy)
        Y = torch.from_numpy(np.stack(ys))
        W = torch.from_numpy(np.stack(ws))
        Yf, Wf = torch.flip(Y, dims=[-1]), torch.flip(W, dims=[-1])
        n = len(paths)
        total = (n if encoded is None else 0) + (cfg.epochs + cfg.tune_epochs) * n
        done = [0]

        def advance(k: int) -> None:
            done[0] += k
            if progress is not None:
                progress(done[0], total)

        if encoded is None:
            encoded = encode_images(paths, cfg, pretrained=pretrained, device=device, verbose=verbose,
                                    progress=None if progress is None else lambda k: progress(k, total))
            done[0] = n
        elif (encoded.input_size, encoded.flip, len(encoded.f8)) != (cfg.input_size, cfg.flip, len(paths)):
            raise ConfigError("the encoded features were made for other images or settings")
        f8s, f16s, f32s = encoded.f8, encoded.f16, encoded.f32
        losses: list[float] = []

        def batches():
            for b in torch.randperm(len(paths), generator=g).split(cfg.batch_size):
                flip = (torch.rand(len(b), generator=g) < 0.5) if cfg.flip else torch.zeros(len(b), dtype=torch.bool)
                j = flip.long()
                yield b, j, torch.where(flip[:, None, None], Yf[b], Y[b]), torch.where(flip[:, None, None], Wf[b], W[b])

        def step(opt, logits, y, w):
            logits = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=False)
            ce = F.cross_entropy(logits, y.to(device), reduction="none")
            loss = (ce * w.to(device)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()

        model.requires_grad_(False)
        model.decoder.requires_grad_(True)
        opt = torch.optim.AdamW(model.decoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.epochs * -(-len(paths) // cfg.batch_size), pct_start=0.1)
        model.decoder.train()
        for _ in tqdm(range(cfg.epochs), disable=not verbose, desc="train decoder", unit="epoch"):
            tot = 0.0
            for b, j, y, w in batches():
                f8 = torch.stack([f8s[i][k] for i, k in zip(b.tolist(), j.tolist())]).to(device)
                f16 = torch.stack([f16s[i][k] for i, k in zip(b.tolist(), j.tolist())]).to(device)
                f32 = torch.stack([f32s[i][k] for i, k in zip(b.tolist(), j.tolist())]).to(device)
                tot += step(opt, model.decoder(f8, f16, f32), y, w) * len(b)
                sched.step()
                advance(len(b))
            losses.append(tot / len(paths))
        if cfg.tune_epochs:
            model.encoder.high.requires_grad_(True)
            model.encoder.high.eval()  # frozen BatchNorm statistics: small CPU batches
            opt = torch.optim.AdamW(
                [{"params": model.decoder.parameters(), "lr": cfg.tune_lr},
                 {"params": model.encoder.high.parameters(), "lr": cfg.tune_lr}],
                weight_decay=cfg.weight_decay)
            for _ in tqdm(range(cfg.tune_epochs), disable=not verbose, desc="tune encoder", unit="epoch"):
                tot = 0.0
                for b, j, y, w in batches():
                    f8 = torch.stack([f8s[i][k] for i, k in zip(b.tolist(), j.tolist())]).to(device)
                    f16 = torch.stack([f16s[i][k] for i, k in zip(b.tolist(), j.tolist())]).to(device)
                    tot += step(opt, model.forward_cached(f8, f16), y, w) * len(b)
                    advance(len(b))
                losses.append(tot / len(paths))
        model.eval().requires_grad_(False)
    finally:
        torch.set_num_threads(old_threads)
    return SegTrainResult(model=model, losses=losses, seconds=time.perf_counter() - t0, threads=n_threads)

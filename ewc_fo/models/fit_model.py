"""The fitted model's shape: a pretrained backbone (classifier head removed) + a new head.

The fitted model is ``head(GAP(backbone.forward_features(x)))``: global average pooling
then a linear layer keeps CAM exact, and the backbone's post-activation layers stay
hookable. Also which layers CAMs read and which blocks fine-tuning trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ewc_fo.models.classifier import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LiteBackbone,
    auto_layers,
    build_efficientnet_lite,
    lite_name,
)
from ewc_fo.runtime.errors import ConfigError

DEFAULT_BACKBONE = "efficientnet_lite0"

class TorchvisionTrunk(nn.Module):
    """A torchvision classifier without its head: ``forward_features`` -> (B, C, h, w)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        for attr in ("fc", "classifier"):  # drop ImageNet heads: unused weights
            if isinstance(getattr(net, attr, None), nn.Module):
                setattr(net, attr, nn.Identity())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        if hasattr(n, "layer4"):  # ResNet / ResNeXt / Wide-ResNet
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            return n.layer4(n.layer3(n.layer2(n.layer1(x))))
        if hasattr(n, "trunk_output"):  # RegNet
            return n.trunk_output(n.stem(x))
        x = n.features(x)
        if type(n).__name__ == "DenseNet":  # its features end on a BatchNorm; ReLU is in forward
            x = torch.relu(x)
        return x


class FittedModel(nn.Module):
    """``head(GAP(features))``; ``out`` is an identity whose output is the exact map the
    head pools, so hooking it gives CAMs of what the head actually reads, for any backbone."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.out = nn.Identity()
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.backbone.forward_features(x))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x))


def make_head(kind: str, num_features: int, num_classes: int, hidden: int = 256) -> nn.Sequential:
    """Linear (default) or a one-hidden-layer MLP, after a fixed standardisation.

    The standardisation is a ``BatchNorm1d`` used only in eval mode: its running stats are
    set to the training features' mean/variance, so the head trains on well-scaled inputs
    and stays linear in the pooled features (CAM still applies to the linear head).
    """
    norm = nn.BatchNorm1d(num_features, affine=False)
    if kind == "linear":
        return nn.Sequential(norm, nn.Linear(num_features, num_classes))
    if kind == "mlp":
        return nn.Sequential(
            norm, nn.Linear(num_features, hidden), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(hidden, num_classes),
        )
    raise ConfigError(f"unknown head {kind!r}: use 'linear' or 'mlp'")


def build_backbone(name: str, pretrained: bool = True) -> tuple[nn.Module, tuple, tuple]:
    """A feature extractor (classifier head removed) and its normalisation mean/std.

    ``efficientnet_lite0/1/2`` work offline; ``torchvision:<name>`` and ``timm:<name>`` use the
    libraries' weight loading (download or local cache).
    """
    if lite_name(name):
        return build_efficientnet_lite(name, pretrained), IMAGENET_MEAN, IMAGENET_STD
    if name.startswith("torchvision:"):
        import torchvision

        arch = name.split(":", 1)[1]
        try:
            weights = torchvision.models.get_model_weights(arch).DEFAULT if pretrained else None
            net = torchvision.models.get_model(arch, weights=weights)
        except Exception as e:  # unknown name, or weights not downloadable offline
            raise ConfigError(
                f"cannot load torchvision backbone {arch!r}: {e} (offline? put the weights in the "
                "torch hub cache, or use the offline default 'efficientnet_lite0')"
            ) from None
        if weights is not None:
            tf = weights.transforms()
            mean, std = tuple(tf.mean), tuple(tf.std)
        else:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        if not (hasattr(net, "layer4") or hasattr(net, "trunk_output") or hasattr(net, "features")):
            raise ConfigError(f"torchvision backbone {arch!r} has no convolutional feature map for CAMs")
        return TorchvisionTrunk(net), mean, std
    if name.startswith("timm:"):
        try:
            import timm
        except ImportError:
            raise ConfigError("timm backbones need `pip install timm`") from None
        arch = name.split(":", 1)[1]
        try:
            net = timm.create_model(arch, pretrained=pretrained, num_classes=0)
        except Exception as e:
            raise ConfigError(f"cannot load timm backbone {arch!r}: {e}") from None
        cfg = net.pretrained_cfg or {}
        return net, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    raise ConfigError(
        f"unknown backbone {name!r}: use 'efficientnet_lite0' (or lite1/lite2), 'torchvision:<name>' or 'timm:<name>'"
    )


def _num_features(backbone: nn.Module) -> int:
    """Channels of the feature map, from one tiny pass (also rejects token-only models)."""
    with torch.no_grad():
        f = backbone.eval().forward_features(torch.zeros(1, 3, 64, 64))
    if f.ndim != 4:
        raise ConfigError(
            f"backbone returns features of shape {tuple(f.shape)}, not a (B, C, H, W) map: "
            "CAMs need a convolutional backbone"
        )
    return int(f.shape[1])


def cam_layers(model: FittedModel, paths: Sequence[str] | None = None) -> dict[str, nn.Module]:
    """CAM target layers of a fitted model; the first is the default.

    ``paths`` (module names such as ``"backbone.net.layer3"``) override the choice.
    Automatic: EfficientNet-Lite0 keeps its ``head``/``s16`` layers; any other backbone gets
    ``features`` (the map the head pools) plus the second layer ``auto_layers`` picks for
    its family (``layer3``, ``features.-3``, ``stages.-2``) when there is one.
    """
    if paths:
        try:
            return {p: model.get_submodule(p) for p in paths}
        except AttributeError as e:
            raise ConfigError(f"CAM layer not found in the fitted model: {e}") from None
    bb = model.backbone
    if isinstance(bb, LiteBackbone):
        return dict(bb.layers)
    layers = {"features": model.out}
    try:
        extra = list(auto_layers(getattr(bb, "net", bb)).items())[1:2]
    except ConfigError:
        extra = []
    layers.update(extra)
    return layers


def block_groups(model: FittedModel) -> list[list[str]]:
    """Module names of the backbone's blocks, input to output; fine-tuning takes the last N."""
    bb = model.backbone
    if isinstance(bb, LiteBackbone):
        groups = [[f"backbone.net._blocks.{i}"] for i in range(len(bb.net._blocks))]
        return groups + [["backbone.net._conv_head", "backbone.net._bn1"]]
    net, base = (bb.net, "backbone.net") if isinstance(bb, TorchvisionTrunk) else (bb, "backbone")
    groups = []
    for attr in ("layer1", "layer2", "layer3", "layer4", "trunk_output", "features", "blocks", "stages"):
        m = getattr(net, attr, None)
        if isinstance(m, nn.Module):
            groups += [[f"{base}.{attr}.{n}"] for n, _ in m.named_children()]
    if hasattr(net, "conv_head") and hasattr(net, "bn2"):  # timm EfficientNet head conv
        groups.append([f"{base}.conv_head", f"{base}.bn2"])
    return groups


def build_fitted_model(
    backbone: str, num_classes: int, head: str = "linear", hidden: int = 256, pretrained: bool = True
) -> tuple[FittedModel, tuple, tuple]:
    """Backbone + a fresh head (weights of the head are random until fitted or loaded)."""
    bb, mean, std = build_backbone(backbone, pretrained)
    nf = bb.num_features if isinstance(bb, LiteBackbone) else _num_features(bb)
    return FittedModel(bb, make_head(head, nf, num_classes, hidden)), mean, std


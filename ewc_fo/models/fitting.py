"""Fit a classifier on the user's image-level labels: pretrained backbone + a new head.

Explainers need a model that knows the user's classes. The pieces live by idea:
:mod:`.fit_model` (backbone + head, CAM layers), :mod:`.fit_data` (labels, held-out split
and score), :mod:`.feature_cache` (pooled features cached on disk); this module trains.

Why it is fast on a CPU: the backbone is frozen (by default), so the head is fitted on
cached pooled features in seconds. Optionally the last ``finetune_blocks`` blocks are
fine-tuned end to end afterwards (slower: full passes over the images).

Host-agnostic: file paths and labels in, :class:`~ewc_fo.models.classifier.Classifier`
out. ``ewc_fo.fo.fit`` reads them from a FiftyOne dataset.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ewc_fo.models.classifier import Classifier
from ewc_fo.models.feature_cache import (  # noqa: F401  (public names of ewc_fo.models.fitting)
    FEATURE_CACHE_VERSION,
    _file_key,
    default_cache_dir,
    extract_features,
    feature_cache_key,
)
from ewc_fo.models.fit_data import (  # noqa: F401
    MIN_SCORED,
    RareClassWarning,
    encode_labels,
    heldout_metrics,
    heldout_split,
    unscored_classes,
)
from ewc_fo.models.fit_model import (  # noqa: F401
    DEFAULT_BACKBONE,
    FittedModel,
    TorchvisionTrunk,
    block_groups,
    build_backbone,
    build_fitted_model,
    cam_layers,
    make_head,
)
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.images import load_image
from ewc_fo.runtime.limits import check_input_size


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
    tick: Callable[[int], None] | None = None,
    pass_size: int | None = None,
) -> None:
    """Fine-tune the given blocks and the head on image passes (BatchNorm statistics
    stay frozen: CPU batches are too small to estimate them).

    On a CPU each step's batch goes through in passes of ``pass_size`` (default 4) whose
    gradients add up to the batch's (BatchNorm is frozen, so the sum is the same step): a
    step of 16 is ~20 s on a 2-core CPU, and the bar and ``tick(images)`` move after every pass."""
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
    micro = pass_size or (batch_size if clf.device.type != "cpu" else min(batch_size, 4))
    bar = tqdm(total=epochs * len(paths), disable=not verbose, desc="fine-tune", unit="img", dynamic_ncols=True)
    for _ in range(epochs):
        for b in torch.randperm(len(paths), generator=g).split(batch_size):
            flip = torch.rand(len(b), generator=g) < 0.5
            opt.zero_grad(set_to_none=True)
            for mb, mflip in zip(b.split(micro), flip.split(micro)):
                x = clf.preprocess([load_image(paths[i]) for i in mb.tolist()], size)
                x[mflip] = torch.flip(x[mflip], dims=[-1])
                loss = loss_fn(model(x), _target(yt[mb], clf.multilabel)) * (len(mb) / len(b))
                loss.backward()
                bar.update(len(mb))
                if tick is not None:
                    tick(len(mb))
            opt.step()
    bar.close()
    model.requires_grad_(True)  # explainers need gradients through every layer


@torch.no_grad()
def _predict_paths(clf: Classifier, paths: Sequence[str], size: int, batch_size: int,
                   tick: Callable[[int], None] | None = None) -> np.ndarray:
    out = []
    for s in range(0, len(paths), batch_size):
        x = clf.preprocess([load_image(p) for p in paths[s : s + batch_size]], size)
        logits = clf.model(x)
        out.append((torch.sigmoid(logits) if clf.multilabel else torch.softmax(logits, -1)).numpy())
        if tick is not None:
            tick(len(x))
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
    progress: Callable[[int, int], None] | None = None,
) -> Classifier:
    """Fit a classifier on images and their labels.

    ``labels[i]`` is a class name (single-label, softmax/CE) or a list of class names
    (multi-label, sigmoid/BCE); samples whose label is ``None`` are skipped.
    ``fit_size`` is the square side images are resized to for fitting; ``input_size``
    (default: ``fit_size``) is the resolution explainers will use, set independently.
    A stratified ``holdout`` fraction is scored (mAP or accuracy, in ``clf.meta``); with
    ``refit`` the frozen-backbone head is then refit on all labels (cheap: cached features).
    Every class with an image is fitted; classes with a single image (a
    :class:`~ewc_fo.models.fit_data.RareClassWarning`) are never held out, and classes
    without a held-out image are listed in ``clf.meta["not_scored"]``.
    ``progress(done, total)`` counts the image passes still to do (features not in the cache,
    then fine-tuning's), rising to ``total``; the head's fit on features takes seconds.
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

    n_train = int((~held).sum())
    later = (finetune_epochs * n_train + int(held.sum())) if tuned else 0  # image passes after the features
    done = [0, 0]  # images passed so far, total once the cache is read

    def _features(d: int, t: int) -> None:
        done[:] = [d, t + later]
        if progress is not None:
            progress(*done)

    def _tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(*done)

    t1 = time.perf_counter()
    x, computed = extract_features(
        clf, paths, size=fit_size, flip=flip, cache_dir=cache_dir, batch_size=batch_size,
        verbose=verbose, progress=_features,
    )
    done[1] = computed + later
    t2 = time.perf_counter()
    hp = dict(HEAD_DEFAULTS[head])
    hp.update({k: v for k, v in {"epochs": epochs, "lr": lr, "l2": l2}.items() if v is not None})
    hp["seed"] = seed
    train_head(model.head, x[~held], y[~held], multilabel, **hp)
    if tuned:
        _finetune(
            clf, [p for p, h in zip(paths, held) if not h], y[~held], tuned, size=fit_size,
            epochs=finetune_epochs, lr=finetune_lr, batch_size=batch_size, seed=seed, verbose=verbose,
            tick=_tick,
        )
    metrics = None
    if held.any():
        if tuned:
            probs = _predict_paths(clf, [p for p, h in zip(paths, held) if h], fit_size, batch_size, _tick)
        else:
            probs = _probs(model.head, x[held], multilabel)
        metrics = heldout_metrics(y[held], probs, names, multilabel)
    if refit and held.any() and not tuned:
        train_head(model.head, x, y, multilabel, **hp)
    model.eval().requires_grad_(True)
    if progress is not None and (done[0] < done[1] or not done[1]):  # e.g. all cached: say it is done
        progress(done[1], done[1])
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
                    metrics={k: round(v, 4) for k, v in metrics["per_class"].items()},
                    not_scored=unscored_classes(y, held, names))
    meta["images_per_class"] = {c: int(n) for c, n in zip(names, y.sum(0))}
    return clf

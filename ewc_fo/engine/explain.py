"""The batched explain pass: every explainer of a batch from ONE forward and ONE backward.

Kept apart from the explainer classes (``explainers.py``): this is where the shared work
happens (hooks on every layer any CAM needs, one ``torch.autograd.grad`` from the target
logits, attributions reusing that backward where they can), and the classes only say what
each method does with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ewc_fo.engine.explainers import Explainer, create_explainer
from ewc_fo.models.classifier import Classifier
from ewc_fo.runtime.device import autocast
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.images import check_image


@dataclass
class ExplainOutput:
    """Maps for one image: ``maps[k, c]`` is explainer ``names[k]`` for ``classes[c]``.

    ``scores[c]`` is the classifier's probability for that class on this image.
    """

    names: list[str]
    classes: list[int]
    maps: np.ndarray  # (K, C, H, W) float32 in [0, 1]
    scores: np.ndarray  # (C,)


def explain(
    clf: Classifier,
    images: Sequence[np.ndarray],
    classes: Sequence[Sequence[int]],
    explainers: Sequence[Explainer],
    *,
    size: int | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    smooth: float = 0.02,
    chunk: int | None = None,
    deadline=None,
    amp: torch.dtype | None = None,
) -> list[ExplainOutput]:
    """Explain every (image, class) pair with every explainer.

    CAM-family maps come from one forward + one backward per scale for the whole batch,
    or per ``chunk`` (image, class) rows when given: each row is an independent
    forward/backward of its image, so the maps do not depend on the chunking (tested),
    while memory grows with ``chunk`` instead of with the number of classes (about
    170 MB per row for EfficientNet-Lite0 at 448 px). ``deadline`` (a
    :class:`~ewc_fo.runtime.budget.Deadline`) is checked between chunks.
    That backward also reaches the input for the gradient-only attributions
    (input_x_gradient, saliency), so they cost nothing more. ``amp``: autocast dtype of
    the network passes (bfloat16 on a GPU); the CAM arithmetic stays float32.
    ``smooth`` is the Gaussian sigma, as a fraction of the image side, applied to the
    pixel-level captum attributions so they describe regions, not edges.
    Returns per image maps at the image's own size, each normalised to [0, 1].
    """
    if len(images) != len(classes):
        raise ConfigError(f"{len(images)} images but {len(classes)} class lists")
    for im in images:
        check_image(im)
    classes = [[clf.class_index(c) for c in cs] for cs in classes]  # UnknownClassError
    exps = [create_explainer(e) for e in explainers]
    if not exps:
        raise ConfigError("at least one explainer is needed")
    for e in exps:
        if e.family == "cam":
            e.layer_name(clf)  # fails early with a clear message
    img_of_row = [i for i, cs in enumerate(classes) for _ in cs]
    rows = [int(c) for cs in classes for c in cs]
    K = len(exps)
    raw: list[list[np.ndarray]] = [[] for _ in range(K)]  # per explainer, per scale: (N,h,w)
    if not rows:
        return [ExplainOutput([e.key for e in exps], [], np.zeros((K, 0, *im.shape[:2]), np.float32),
                              np.zeros(0, np.float32)) for im in images]

    base = int(size or clf.input_size)
    probs = None
    flips = (False, True) if flip else (False,)
    # attributions and class probabilities come from the base view (the scale nearest 1, unflipped)
    base_sc = min(scales, key=lambda v: abs(v - 1.0))
    step = max(1, int(chunk or len(rows)))
    for sc in scales:
        s = max(32, int(round(base * sc / 32)) * 32)
        x_img = clf.preprocess(images, s)
        for fl in flips:
            parts: list[list[np.ndarray]] = [[] for _ in range(K)]
            plog = []
            base_view = sc == base_sc and not fl
            shared = [k for k, e in enumerate(exps) if base_view and e.family == "attribution"
                      and e.from_gradient]
            for r0 in range(0, len(rows), step):
                if deadline is not None:
                    deadline.check("explain")
                rs = rows[r0:r0 + step]
                x = x_img[img_of_row[r0:r0 + step]]
                if fl:
                    x = torch.flip(x, dims=[-1])
                plog.append(_cam_pass(clf, x, rs, exps, parts, fl, shared, amp))
                if base_view:
                    for k, e in enumerate(exps):
                        if e.family == "attribution" and k not in shared:
                            with autocast(x.device, amp):
                                parts[k].append(e.explain(clf, x, rs))
            for k in range(K):
                if parts[k]:
                    raw[k].append(np.concatenate(parts[k]))
            if base_view and plog[0] is not None:
                probs = torch.cat(plog)
    if probs is None:
        with torch.no_grad(), autocast(clf.device, amp):
            x_base = clf.preprocess(images, base)
            probs = torch.cat([clf.model(x_base[img_of_row[r0:r0 + step]]).float()
                               for r0 in range(0, len(rows), step)])
    p = torch.sigmoid(probs) if clf.multilabel else torch.softmax(probs, -1)
    row_scores = p[torch.arange(len(rows)), torch.tensor(rows)].detach().cpu().numpy()

    outputs: list[ExplainOutput] = []
    r0 = 0
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        n = len(classes[i])
        maps = np.zeros((K, n, h, w), np.float32)
        for k, e in enumerate(exps):
            for j in range(n):
                acc = np.zeros((h, w), np.float32)
                for m in raw[k]:
                    acc += cv2.resize(m[r0 + j], (w, h), interpolation=cv2.INTER_LINEAR)
                acc /= max(1, len(raw[k]))
                if e.family == "attribution" and smooth > 0:
                    sig = smooth * max(h, w)
                    acc = cv2.GaussianBlur(acc, (0, 0), sigmaX=sig, sigmaY=sig)
                maps[k, j] = normalize_map(acc, robust=e.family == "attribution")
        outputs.append(ExplainOutput([e.key for e in exps], list(classes[i]), maps,
                                     row_scores[r0:r0 + n].astype(np.float32)))
        r0 += n
    return outputs


def _cam_pass(clf, x, rows, exps, raw, flipped, shared=(), amp=None) -> torch.Tensor | None:
    """One forward (+ one backward if any CAM needs gradients) serving every CAM, and the
    explainers in ``shared`` (indices) from the same backward's input gradient."""
    cams = [(k, e) for k, e in enumerate(exps) if e.family == "cam"]
    if not cams and not shared:
        return None
    names = sorted({e.layer_name(clf) for _, e in cams}, key=list(clf.layers).index)
    outs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            outs[name] = output[0] if isinstance(output, (tuple, list)) else output
        return hook

    handles = [clf.layers[n].register_forward_hook(keep(n)) for n in names]
    need_grad = any(e.uses_gradients for _, e in cams) or bool(shared)
    xin = x.detach().requires_grad_(need_grad)
    try:
        with torch.set_grad_enabled(need_grad), autocast(x.device, amp):
            # the input requires grad so a frozen model (no trainable parameters) still
            # builds a graph; its gradient is computed only when ``shared`` asks for it
            logits = clf.model(xin).float()
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if not isinstance(outs.get(n), torch.Tensor)]
    if missing:
        raise ConfigError(f"CAM layer(s) {', '.join(missing)} produced no tensor during the "
                          "forward pass: is the layer part of the model's forward?")
    grads: dict[str, np.ndarray] = {}
    if need_grad:
        target = logits[torch.arange(len(rows)), torch.tensor(rows)].sum()
        gs = torch.autograd.grad(target, [outs[n] for n in names] + ([xin] if shared else []),
                                 allow_unused=True)
        for n, g in zip(names, gs):
            if g is None:
                raise ConfigError(f"CAM layer {n!r} does not influence the classifier output")
            grads[n] = g.detach().float().cpu().numpy()
        for k in shared:  # reduced to (N, h, w) on the device before it leaves
            raw[k].append(exps[k].from_input_grad(xin, gs[-1].detach().float()))
    acts = {n: outs[n].detach().float().cpu().numpy() for n in names}
    outs.clear()  # drop the graph-holding tensors before the CAM maths
    for k, e in cams:
        n = e.layer_name(clf)
        m = e.from_pass(clf, x, rows, acts[n], grads.get(n))
        raw[k].append(m[..., ::-1].copy() if flipped else m)
    return logits.detach()


def normalize_map(m: np.ndarray, robust: bool = False) -> np.ndarray:
    """Clip negatives and scale to [0, 1] by the max (or the 99.5th percentile if robust).

    An all-zero map stays all-zero: "no evidence" must not become a flat 1.
    """
    m = np.maximum(np.nan_to_num(m.astype(np.float32)), 0)
    top = float(np.percentile(m, 99.5)) if robust else float(m.max())
    if top <= 1e-12:
        return np.zeros_like(m)
    return np.clip(m / top, 0, 1)

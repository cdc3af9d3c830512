"""Explainers: one saliency map per (image, class), from pytorch-grad-cam and captum.

Design (after pytorch-grad-cam and timm):

- every explainer is a small class registered under a name; :func:`create_explainer`
  is the one entry point and :func:`list_explainers` the discovery call;
- CAM-family explainers never run the model themselves. :func:`ewc_fo.engine.explain.explain` runs **one**
  forward over the batch with a forward hook on every layer any CAM needs and **one**
  backward (``torch.autograd.grad`` from the target logits to those layer outputs only:
  no parameter gradients, nothing below the hooked layers), then hands each CAM the
  activations and gradients; the library's own ``get_cam_image`` does the
  method-specific maths;
- attribution explainers (captum) need their own passes by nature and get the batch.

A batch is a list of images and, for each image, the class indices to explain. Each
(image, class) pair becomes one row of the network batch, so one backward pass gives
per-class gradients for every row.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from ewc_fo.models.classifier import Classifier
from ewc_fo.runtime.errors import ConfigError

_REGISTRY: dict[str, type[Explainer]] = {}


def register_explainer(name: str, *, default: bool = False):
    """Class decorator adding an explainer to the registry under ``name``."""

    def deco(cls):
        cls.name = name
        cls.is_default = default
        _REGISTRY[name] = cls
        return cls

    return deco


def list_explainers(defaults_only: bool = False) -> list[str]:
    """Registered explainer names; ``defaults_only`` lists those used when none are named."""
    return [n for n, c in _REGISTRY.items() if c.is_default or not defaults_only]


def create_explainer(name: str | Explainer, **kwargs) -> Explainer:
    """Create an explainer by name (``"gradcam"``, ``"gradcam@s16"`` picks a layer)."""
    if isinstance(name, Explainer):
        return name
    base, _, layer = str(name).partition("@")
    if base not in _REGISTRY:
        raise ConfigError(f"unknown explainer {name!r}; available: {', '.join(_REGISTRY)}")
    if layer:
        kwargs.setdefault("layer", layer)
    try:
        return _REGISTRY[base](**kwargs)
    except TypeError as e:  # a misspelt or unsupported option
        raise ConfigError(f"explainer {name!r}: {e}") from None


class Explainer:
    """Base: produces raw, non-negative maps (N, h, w) at any resolution, one per row."""

    name = "explainer"
    family = "base"
    is_default = False

    def __init__(self, layer: str | None = None):
        self.layer = layer

    @property
    def key(self) -> str:
        """Name as stored in results: the registry name, plus ``@layer`` when set."""
        return f"{self.name}@{self.layer}" if self.layer else self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


# ---------------------------------------------------------------- CAM family


class CAMExplainer(Explainer):
    """A CAM method computed from shared activations and gradients.

    Subclasses name the pytorch-grad-cam class; the library object is built once per
    classifier with its hooks removed, so only its maths is used.
    """

    family = "cam"
    cam_class: type = GradCAM
    uses_gradients = True
    extra_forward = False  # Score-CAM runs its own masked forwards

    def __init__(self, layer: str | None = None):
        super().__init__(layer)
        self._cam = None
        self._for = None

    def _library_cam(self, clf: Classifier, layer: torch.nn.Module):
        """The library CAM object for (model, layer), built once and kept without hooks.

        ``activations_and_grads`` is set to a no-op stand-in *before* the library's
        ``__init__`` runs, so neither a failing constructor nor interpreter teardown can
        make ``BaseCAM.__del__`` print "Exception ignored" noise.
        """
        if self._for is None or self._for[0] is not clf.model or self._for[1] is not layer:
            cam = self.cam_class.__new__(self.cam_class)
            cam.activations_and_grads = _NoHooks()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.cam_class.__init__(cam, model=clf.model, target_layers=[layer])
            except Exception as e:
                raise ConfigError(f"explainer {self.key}: pytorch-grad-cam cannot use this "
                                  f"model/layer: {e}") from None
            cam.activations_and_grads.release()
            cam.activations_and_grads = _NoHooks()
            self._cam, self._for = cam, (clf.model, layer)
        return self._cam

    #: layer used when none is named: "deep" (last feature map) or "mid" (an earlier one)
    default_layer = "deep"

    def layer_name(self, clf: Classifier) -> str:
        """Resolve ``self.layer`` (a layer name or the aliases deep/mid) on ``clf``."""
        name = self.layer or self.default_layer
        names = list(clf.layers)
        if name == "deep":
            return names[0]
        if name == "mid":
            return names[1] if len(names) > 1 else names[0]
        if name not in clf.layers:
            raise ConfigError(f"explainer {self.key}: classifier has no layer {name!r} "
                              f"(has {', '.join(names)}, or the aliases deep/mid)")
        return name

    def from_pass(self, clf: Classifier, x: torch.Tensor, rows: list[int], act: np.ndarray,
                  grad: np.ndarray | None) -> np.ndarray:
        layer = clf.layers[self.layer_name(clf)]
        cam = self._library_cam(clf, layer)
        targets = [ClassifierOutputTarget(int(c)) for c in rows]
        with torch.enable_grad() if self.extra_forward else contextlib.nullcontext():
            out = cam.get_cam_image(x, layer, targets, act, grad, False)
        return np.maximum(np.asarray(out, dtype=np.float32), 0)


class _NoHooks:
    """Stand-in for a released ActivationsAndGradients (its __del__ path is a no-op)."""

    activations: list = []
    gradients: list = []

    def release(self) -> None:
        pass


@register_explainer("gradcam", default=True)
class GradCAMExplainer(CAMExplainer):
    cam_class = GradCAM


@register_explainer("gradcampp", default=True)
class GradCAMPlusPlusExplainer(CAMExplainer):
    cam_class = GradCAMPlusPlus


@register_explainer("xgradcam", default=True)
class XGradCAMExplainer(CAMExplainer):
    cam_class = XGradCAM


@register_explainer("layercam", default=True)
class LayerCAMExplainer(CAMExplainer):
    """LayerCAM defaults to the earliest hooked layer: finer maps, different evidence."""

    cam_class = LayerCAM
    default_layer = "mid"


@register_explainer("eigencam")
class EigenCAMExplainer(CAMExplainer):
    """First principal component of the activations, class-agnostic.

    SVD leaves the sign arbitrary. We orient it so the long tail of the projection is
    positive (positive skewness): the object is the minority of pixels whose features
    stand out from the mean, the background the bulk near it. This is the Seg-Eigen-CAM
    rule (flip when |min| > |max|; Chung & Ying 2025, in pytorch-grad-cam as
    ``get_2d_projection_with_sign_correction``) using every pixel instead of two extremes.
    On 60 VOC images with EfficientNet-Lite0 it matches or beats orienting towards the
    mean channel response, and unlike that rule it does not depend on trained weights.
    """

    cam_class = EigenCAM
    uses_gradients = False

    def from_pass(self, clf, x, rows, act, grad):
        # the library's projection (get_2d_projection) with an economy SVD: the full one
        # builds a C x C matrix (1280² for EfficientNet) for nothing. Rows of one image
        # share activations (EigenCAM ignores the class), so the SVD runs once per image.
        # BLAS runs single-threaded here: on a (h*w) x C matrix threads only add overhead,
        # and OpenBLAS threads spinning against torch's OpenMP pool made one 100 x 1280
        # SVD take 1.7 s instead of 10 ms on a busy 2-core machine.
        proj = np.zeros((len(act), *act.shape[2:]), np.float32)
        with threadpool_limits(1, user_api="blas"):
            for i in range(len(act)):
                if i and np.array_equal(act[i], act[i - 1]):
                    proj[i] = proj[i - 1]
                    continue
                p = _first_component(act[i]).astype(np.float64)
                skew = ((p - p.mean()) ** 3).mean()
                if skew < 0 or (skew == 0 and abs(p.min()) > abs(p.max())):
                    p = -p
                proj[i] = p
        return np.maximum(proj, 0)


def _first_component(act: np.ndarray) -> np.ndarray:
    """Projection of (C, h, w) activations on their first principal direction (sign arbitrary)."""
    a = np.nan_to_num(act.reshape(act.shape[0], -1).T.astype(np.float64))
    a = a - a.mean(axis=0)
    if not np.any(a):
        return np.zeros(act.shape[1:], np.float32)
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    return (a @ vt[0]).reshape(act.shape[1:]).astype(np.float32)


@register_explainer("scorecam")
class ScoreCAMExplainer(CAMExplainer):
    """Score-CAM: one masked forward per channel; opt-in because it is slow on CPU."""

    cam_class = ScoreCAM
    uses_gradients = False
    extra_forward = True

    def from_pass(self, clf, x, rows, act, grad):
        layer = clf.layers[self.layer_name(clf)]
        cam = self._library_cam(clf, layer)
        cam.batch_size = 32
        targets = [ClassifierOutputTarget(int(c)) for c in rows]
        # the library prints a tqdm bar per row on stderr: keep the caller's output clean
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            out = cam.get_cam_image(x, layer, targets, act, None, False)
        return np.maximum(np.asarray(out, dtype=np.float32), 0)


# ---------------------------------------------------------------- captum attributions


class AttributionExplainer(Explainer):
    """A captum attribution method; maps are |attribution| summed over channels."""

    family = "attribution"
    #: the map is a function of the input gradient alone: the shared pass's backward
    #: (:func:`_cam_pass`) then serves it, with no forward and backward of its own
    from_gradient = False

    def from_input_grad(self, x: torch.Tensor, grad: torch.Tensor) -> np.ndarray:
        """The map from the input and its gradient (only when ``from_gradient``)."""
        raise NotImplementedError

    def attribute(self, clf: Classifier, x: torch.Tensor, rows: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def explain(self, clf: Classifier, x: torch.Tensor, rows: list[int]) -> np.ndarray:
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            a = self.attribute(clf, x, rows)
        return a.detach().abs().sum(1).cpu().numpy().astype(np.float32)


@register_explainer("integrated_gradients")
class IntegratedGradientsExplainer(AttributionExplainer):
    def __init__(self, layer: str | None = None, n_steps: int = 16):
        super().__init__(None)
        self.n_steps = n_steps

    def attribute(self, clf, x, rows):
        from captum.attr import IntegratedGradients

        ig = IntegratedGradients(clf.model)
        return ig.attribute(x, target=list(rows), n_steps=self.n_steps,
                            internal_batch_size=max(1, len(rows)) * 4)


@register_explainer("input_x_gradient", default=True)
class InputXGradientExplainer(AttributionExplainer):
    """captum's InputXGradient; inside :func:`explain` computed from the shared backward
    as ``input * gradient`` (what captum computes, with the same gradient)."""

    from_gradient = True

    def from_input_grad(self, x, grad):
        return (x.detach() * grad).abs().sum(1).float().cpu().numpy()

    def attribute(self, clf, x, rows):
        from captum.attr import InputXGradient

        return InputXGradient(clf.model).attribute(x, target=list(rows))


@register_explainer("saliency")
class SaliencyExplainer(AttributionExplainer):
    from_gradient = True

    def from_input_grad(self, x, grad):
        return grad.abs().sum(1).float().cpu().numpy()

    def attribute(self, clf, x, rows):
        from captum.attr import Saliency

        return Saliency(clf.model).attribute(x, target=list(rows), abs=True)


@register_explainer("occlusion")
class OcclusionExplainer(AttributionExplainer):
    """Occlusion: output drop when a window is greyed out; opt-in (many forwards)."""

    def __init__(self, layer: str | None = None, window: float = 0.125, stride: float = 0.0625):
        super().__init__(None)
        self.window, self.stride = window, stride

    def explain(self, clf, x, rows):
        from captum.attr import Occlusion

        s = x.shape[-1]
        w, st = max(2, int(s * self.window)), max(1, int(s * self.stride))
        with torch.no_grad():
            a = Occlusion(clf.model).attribute(
                x, target=list(rows), sliding_window_shapes=(3, w, w), strides=(3, st, st),
                baselines=0.0, perturbations_per_eval=16,
            )
        # a positive drop in the score marks evidence; negative drops are not the object
        return a.clamp(min=0).sum(1).cpu().numpy().astype(np.float32)


# ---------------------------------------------------------------- the shared pass

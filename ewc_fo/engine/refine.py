"""Refinement: the fused maps and the segmenter's masks -> one label map that follows the image.

The segmenter cuts each class from its prompt alone; the fused map knows more than the prompt
(on held-out VOC images the fused *map* beat fused + GrabCut). A refinement stage, as in
weakly supervised segmentation pipelines, takes both as soft evidence per pixel and lets the
image's colours decide the uncertain pixels:

    e_c = r_c * ((1 - beta) * F_c + beta * S_c),   e_bg = 1 - max_c e_c,   P = e / sum(e)

with ``F_c`` the fused map, ``S_c`` the segmenter's mask, ``r_c`` the class's probability
relative to the image's strongest class and ``beta`` = :data:`MASK_WEIGHT`. Before
refinement the argmax of ``P`` is the segmenter's mask (with ``beta = 0.5``: inside a
mask a class scores at least 0.5 r_c, outside at most 0.5 r_c); the map only moves pixels
the image's colours agree to move.

Methods (``EWCConfig.refine``):

- ``"crf"``: a fully connected CRF (Krähenbühl & Koltun 2011) from ``pydensecrf``
  (PyPI ``pydensecrf2``, compiled), with the pairwise terms WSSS papers use on VOC;
- ``"pamr"``: a training-free pixel-adaptive refinement in torch (after Araslanov & Roth,
  CVPR 2020): ``P`` is averaged over dilated neighbourhoods with weights from local colour
  similarity, a few times; no compiled dependency;
- ``"none"``: the segmenter's masks as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import Segmentation

REFINE_METHODS = ("none", "crf", "pamr")
#: beta above: the segmenter's mask and the fused map count equally (as the mask votes do)
MASK_WEIGHT = 0.5
#: dense CRF pairwise terms at VOC resolution (the values of DeepLab / AffinityNet / IRN)
CRF_GAUSSIAN = {"sxy": 3, "compat": 3}
CRF_BILATERAL = {"sxy": 80, "srgb": 13, "compat": 10}
CRF_ITERATIONS = 10
#: the CRF runs at most at this side, its spatial widths scaled with it (GrabCut runs at 320
#: px too; the CRF's cost grows with the pixel count)
CRF_SIDE = 320
#: PAMR: neighbourhood dilations and iterations (the published values)
PAMR_DILATIONS = (1, 2, 4, 8, 12, 24)
PAMR_ITERATIONS = 10
#: PAMR runs at most at this side (it is a diffusion: detail below it is the CRF's job)
PAMR_SIDE = 320

CRF_MISSING = ("refine='crf' needs pydensecrf (pip install pydensecrf2; it compiles, so it needs "
               "a C++ compiler and Cython); refine='pamr' needs nothing extra")


def check_method(method: str) -> None:
    """Raise :class:`ConfigError` for an unknown method or a CRF that cannot be imported."""
    if method not in REFINE_METHODS:
        raise ConfigError(f"refine must be one of {', '.join(REFINE_METHODS)}; got {method!r}")
    if method == "crf":
        try:
            import pydensecrf.densecrf  # noqa: F401
        except ImportError:
            raise ConfigError(CRF_MISSING) from None


def probabilities(maps: np.ndarray, masks: Sequence[np.ndarray],
                  strengths: Sequence[float] | None = None, beta: float = MASK_WEIGHT) -> np.ndarray:
    """(C + 1, h, w) soft evidence, background first (module docstring)."""
    C = len(maps)
    m = np.stack([np.asarray(s, np.float32) for s in masks]) if C else np.zeros_like(maps)
    if m.shape != maps.shape:
        m = np.stack([cv2.resize(x, maps.shape[:0:-1], interpolation=cv2.INTER_NEAREST) for x in m])
    e = (1 - beta) * np.clip(maps, 0, 1) + beta * m
    if strengths is not None and C:
        st = np.asarray(strengths, np.float32)
        e = e * (st / max(float(st.max()), 1e-6))[:, None, None]
    bg = 1 - e.max(0, initial=0)[None]
    p = np.concatenate([bg, e]).astype(np.float32) + 1e-4
    return p / p.sum(0, keepdims=True)


def refine_labels(image: np.ndarray, maps: np.ndarray, masks: Sequence[np.ndarray],
                  strengths: Sequence[float] | None = None, method: str = "crf",
                  beta: float = MASK_WEIGHT) -> np.ndarray:
    """Label map (h, w) at ``maps``' size: 0 = background, c + 1 = class c.

    ``image`` is the RGB uint8 image the maps were computed on (any size: it is resized to
    the maps'), ``maps`` (C, h, w) the fused (or one explainer's) maps, ``masks`` the
    segmenter's boolean masks per class.
    """
    check_method(method)
    h, w = maps.shape[-2:]
    if not len(maps):
        return np.zeros((h, w), np.uint8)
    p = probabilities(maps, masks, strengths, beta)
    if method == "none":
        lab = p.argmax(0)
    else:
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        lab = (_crf if method == "crf" else _pamr)(image, p).argmax(0)
    return lab.astype(np.uint8 if len(maps) < 255 else np.uint16)


def _crf(image: np.ndarray, p: np.ndarray) -> np.ndarray:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    n, h, w = p.shape
    s = min(1.0, CRF_SIDE / max(h, w))
    img, ps = _at_scale(image, p, s)
    hs, ws = ps.shape[1:]
    d = dcrf.DenseCRF2D(ws, hs, n)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(ps)))
    d.addPairwiseGaussian(sxy=CRF_GAUSSIAN["sxy"] * s, compat=CRF_GAUSSIAN["compat"])
    # pydensecrf reads the buffer directly: C-contiguous, writable uint8 or it fails
    d.addPairwiseBilateral(sxy=CRF_BILATERAL["sxy"] * s, srgb=CRF_BILATERAL["srgb"],
                           rgbim=np.array(img, np.uint8, order="C", copy=True),
                           compat=CRF_BILATERAL["compat"])
    q = np.array(d.inference(CRF_ITERATIONS), np.float32).reshape(n, hs, ws)
    return _upsample(q, h, w)


def _at_scale(image: np.ndarray, p: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """The RGB image and the (n, h, w) probabilities at scale ``s`` (<= 1)."""
    n, h, w = p.shape
    img = image[..., :3]
    if s >= 1:
        return img, p
    hs, ws = max(1, round(h * s)), max(1, round(w * s))
    img = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA)
    # one plane at a time: OpenCV's area resampling takes at most 4 channels
    return img, np.stack([cv2.resize(c, (ws, hs), interpolation=cv2.INTER_AREA) for c in p])


def _upsample(q: np.ndarray, h: int, w: int) -> np.ndarray:
    if q.shape[1:] == (h, w):
        return q
    return np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in q])


def _pamr(image: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pixel-adaptive refinement: P <- sum over 8 neighbours at each dilation of a(i, j) P_j,
    with a = softmax over the neighbours of -|I_i - I_j| / (0.1 sigma_i) (sigma_i: the spread
    of the neighbours' colours, so the kernel adapts to local contrast)."""
    import torch

    n, h, w = p.shape
    img, ps = _at_scale(image, p, min(1.0, PAMR_SIDE / max(h, w)))
    x = torch.from_numpy(np.ascontiguousarray(img, np.float32) / 255).permute(2, 0, 1)[None]
    q = torch.from_numpy(np.ascontiguousarray(ps, np.float32))[None]
    with torch.no_grad():
        nb_x = torch.cat([_neighbours(x, d) for d in PAMR_DILATIONS], 2)  # (1, 3, N, h, w)
        sigma = nb_x.std(2, keepdim=True)
        aff = -((nb_x - x[:, :, None]).abs() / (0.1 * sigma + 1e-8)).mean(1)  # (1, N, h, w)
        aff = torch.softmax(aff, 1)[0]
        del nb_x
        for _ in range(PAMR_ITERATIONS):
            new = torch.zeros_like(q)
            k = 0
            for d in PAMR_DILATIONS:
                for nb in _shifted(q, d):
                    new += aff[k] * nb
                    k += 1
            q = new
    return _upsample(q[0].numpy(), h, w)


def _shifted(x, d: int):
    """The 8 neighbours of every pixel at dilation ``d`` (edges replicated), one view each."""
    import torch.nn.functional as tf

    h, w = x.shape[-2:]
    xp = tf.pad(x, (d, d, d, d), mode="replicate")
    return [xp[..., d + dy:d + dy + h, d + dx:d + dx + w]
            for dy in (-d, 0, d) for dx in (-d, 0, d) if dy or dx]


def _neighbours(x, d: int):
    """(B, C, h, w) -> (B, C, 8, h, w): :func:`_shifted` stacked."""
    import torch

    return torch.stack(_shifted(x, d), 2)


def refine_segmentations(image: np.ndarray, fused: np.ndarray, segs: Sequence[Segmentation],
                         strengths: Sequence[float] | None, method: str,
                         beta: float = MASK_WEIGHT) -> list[Segmentation]:
    """The pipeline's stage: each class's segmentation replaced by its refined mask, split
    over the same regions (instances), each keeping its quality."""
    if method == "none" or not len(segs):
        return list(segs)
    lab = refine_labels(image, fused, [s.mask for s in segs], strengths, method, beta)
    out = []
    for c, s in enumerate(segs):
        parts = refine_regions(lab, c, s.masks)
        quals = list(s.qualities) if s.masks else [0.0]  # pixels no region had: no segmenter score
        keep = [i for i, m in enumerate(parts) if m.any()]
        out.append(Segmentation([parts[i] for i in keep], [quals[i] for i in keep], lab.shape))
    return out


def refine_regions(label: np.ndarray, c: int, regions: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Class ``c``'s refined mask split over the segmenter's ``regions`` (one mask per region,
    same order; with no region, one mask): each region keeps its refined pixels, pixels the
    refinement added go to the nearest region."""
    mask = label == c + 1
    if len(regions) <= 1:
        return [mask]
    from scipy.ndimage import distance_transform_edt

    ids = np.zeros(mask.shape, np.int32)
    for i, r in enumerate(regions):
        ids[r & (ids == 0)] = i + 1
    if not ids.any():
        return [mask] + [np.zeros_like(mask)] * (len(regions) - 1)
    _, (iy, ix) = distance_transform_edt(ids == 0, return_indices=True)
    owner = ids[iy, ix]
    return [mask & (owner == i + 1) for i in range(len(regions))]


__all__ = ["REFINE_METHODS", "check_method", "probabilities", "refine_labels", "refine_regions",
           "refine_segmentations"]

"""Mask and palette encodings shared by the exporters and the annotation round trip:
VOC's palette, label maps to and from PNG, instance masks pasted into the image, COCO RLE.

Pure array/file helpers with no run logic, so export.py keeps only what it writes and where.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import fiftyone as fo
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ewc_fo.fo.io.classes import VOID


def voc_colormap(n: int = 256) -> np.ndarray:
    """The standard PASCAL VOC colour map (``n`` x 3 uint8), bit-interleaved from the index."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def voc_palette() -> list[int]:
    """The 768-entry flat palette for ``PIL.Image.putpalette``."""
    return voc_colormap(256).reshape(-1).tolist()


def _read_mask(seg) -> np.ndarray | None:
    if seg is None:
        return None
    m = seg.get_mask()
    if m is None:
        return None
    m = np.asarray(m)
    if m.ndim == 3:  # a stray RGB/alpha copy: the class ids are in the first channel
        m = m[..., 0]
    return m.astype(np.uint8, copy=False)


def paste_instance(det: fo.Detection, width: int, height: int) -> np.ndarray | None:
    """Full-image boolean mask of a detection whose ``mask`` is cropped to its relative box.

    The box corner is rounded (FiftyOne truncates, which can shift a mask by a pixel) and the
    crop is used at its own size unless it disagrees with the box by more than a pixel.
    """
    if not det.has_mask:
        return None
    crop = np.asarray(det.get_mask())
    if crop.ndim == 3:
        crop = crop[..., 0]
    crop = crop.astype(bool)
    bx, by, bw, bh = det.bounding_box
    x0, y0 = int(round(bx * width)), int(round(by * height))
    tw, th = max(int(round(bw * width)), 1), max(int(round(bh * height)), 1)
    if abs(crop.shape[0] - th) > 1 or abs(crop.shape[1] - tw) > 1:
        crop = cv2.resize(crop.astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST) > 0
    full = np.zeros((height, width), dtype=bool)
    mh, mw = crop.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + mw, width), min(y0 + mh, height)
    if xb > xa and yb > ya:
        full[ya:yb, xa:xb] = crop[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return full


def _components(label_map: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(class id, boolean mask) per 8-connected region of each class of a label map."""
    for cid in np.unique(label_map):
        if cid in (0, VOID):
            continue
        n, cc = cv2.connectedComponents((label_map == cid).astype(np.uint8), connectivity=8)
        for k in range(1, n):
            yield int(cid), cc == k


def _band(label_map: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` px of a boundary between two different values (dilate != erode)."""
    h, w = label_map.shape[:2]
    if width >= h + w:  # the disk covers the whole image from every pixel (and cv2 cannot take it)
        return np.full((h, w), np.unique(label_map).size > 1)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return cv2.dilate(label_map, k) != cv2.erode(label_map, k)


def _coco_segmentation(m: np.ndarray, polygons: bool) -> tuple[dict | list, float, list[float]]:
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    area = float(mask_utils.area(rle))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    seg: dict | list = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    if polygons:
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polys = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
        if polys:  # regions thinner than a polygon stay RLE rather than vanish
            seg = polys
    return seg, area, bbox


def _save_palette_png(arr: np.ndarray, path: Path) -> None:
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette(voc_palette())
    im.save(path)

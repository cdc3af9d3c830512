"""Image loading that matches what the FiftyOne App shows.

Every image becomes an ``uint8`` RGB array with EXIF orientation applied, so masks line
up with the picture a reviewer sees. Grayscale, palette, RGBA and 16-bit images are
converted; anything PIL cannot decode raises :class:`ImageLoadError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageLoadError

MIN_SIDE = 8


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to an HxWx3 uint8 array (16-bit and float are rescaled)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # composite on white: transparent pixels otherwise turn black and look like objects
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read ``path`` as EXIF-oriented RGB ``uint8``; raise :class:`ImageLoadError` on any failure."""
    p = Path(path)
    if not p.is_file():
        raise ImageLoadError(f"image file not found: {p}")
    try:
        with Image.open(p) as img:
            img.load()  # forces a full decode: truncated files fail here, not later
            img = ImageOps.exif_transpose(img)
            arr = to_rgb_uint8(img)
    except ImageLoadError:
        raise
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError...)
        raise ImageLoadError(f"cannot decode image {p.name}: {e}") from None
    check_image(arr, source=str(p))
    return arr


def check_image(image: np.ndarray, source: str | None = None) -> None:
    """Validate an in-memory image: HxWx3 uint8 of at least ``MIN_SIDE`` pixels a side.
    ``source`` (the file) is named in the error, with the image's own size."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ImageLoadError(f"expected an HxWx3 RGB array, got shape {shape}")
    if image.dtype != np.uint8:
        raise ImageLoadError(f"expected uint8 pixels, got {image.dtype}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        name = f" {source}" if source else ""
        raise ImageLoadError(f"image{name} is {w}x{h} px; both sides must be at least {MIN_SIDE} px")


def ensure_rgb(image: np.ndarray) -> np.ndarray:
    """Accept HxW, HxWx1, HxWx3, HxWx4 arrays of uint8/uint16/float and return HxWx3 uint8."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ImageLoadError(f"expected an image array HxW[x1|3|4], got shape {a.shape}")
    if a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float64) / (65535.0 if a.dtype == np.uint16 else 255.0 if a.dtype == np.uint8 else 1.0)
        rgb = a[..., :3].astype(np.float64)
        full = 65535.0 if a.dtype == np.uint16 else 255.0 if a.dtype == np.uint8 else 1.0
        a = rgb * alpha + full * (1 - alpha)
        a = a.astype(image.dtype) if np.issubdtype(image.dtype, np.integer) else a
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype == np.uint16:
        a = np.rint(a.astype(np.float64) / 257.0)
    elif np.issubdtype(a.dtype, np.floating):
        finite = a[np.isfinite(a)]
        a = a * 255.0 if finite.size and float(finite.max()) <= 1.0 else a
    a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    check_image(a)
    return np.ascontiguousarray(a)

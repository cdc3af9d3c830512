"""Image loading that matches what the FiftyOne App shows.

Every image becomes an ``uint8`` RGB array with EXIF orientation applied, so masks line
up with the picture a reviewer sees. Grayscale, palette, RGBA and 16-bit images are
converted; anything PIL cannot decode raises :class:`ImageLoadError`.

Images above :data:`MAX_PIXELS` are refused before decoding (:class:`ImageTooLargeError`):
masks are written at the image's full size, one plane per class and instance, so a
10000x10000 PNG of 12 KB (a decompression bomb, or a blank scan) would take gigabytes.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ewc_fo.runtime.errors import FlatImageError, ImageLoadError, ImageTooLargeError

MIN_SIDE = 8
#: the most pixels an image may have (50 MP: an 8660x5770 photo); ``$EWC_MAX_IMAGE_PIXELS``
#: overrides it. PIL's own decompression-bomb limit (89 MP warning, 179 MP error) is above it.
MAX_PIXELS = int(os.environ.get("EWC_MAX_IMAGE_PIXELS", 50_000_000))


def _check_pixels(w: int, h: int) -> None:
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(
            f"image is {w}x{h} ({w * h / 1e6:.0f} MP); ewc-fo labels images up to "
            f"{MAX_PIXELS / 1e6:.0f} MP at full size (resize it, or set EWC_MAX_IMAGE_PIXELS)"
        )


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


def _not_a_file(p: Path) -> str:
    """What stands at ``p`` instead of an image file, in words (issue 23: a folder named
    ``x.jpg`` or a symlink loop was reported as "not found")."""
    try:
        p.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"image path is a symlink loop: {p}"
        if p.is_symlink():
            return f"image path is a symlink to a missing file ({os.readlink(p)}): {p}"
        if e.errno == errno.ENOENT:
            return f"image file not found: {p}"
        return f"image file cannot be read ({e.strerror or e}): {p}"
    if p.is_dir():
        return f"image path is a folder, not a file: {p}"
    return f"image path is not a regular file (a device, a pipe or a socket): {p}"


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read ``path`` as EXIF-oriented RGB ``uint8``; raise :class:`ImageLoadError` on any failure."""
    p = Path(path)
    if not p.is_file():
        raise ImageLoadError(_not_a_file(p))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS is lower
            img = Image.open(p)
        with img:
            _check_pixels(*img.size)  # from the header: nothing decoded yet
            img.load()  # forces a full decode: truncated files fail here, not later
            img = ImageOps.exif_transpose(img)
            arr = to_rgb_uint8(img)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:  # above PIL's hard limit, when MAX_PIXELS is raised
        raise ImageTooLargeError(f"image {p.name} refused as a decompression bomb: {e}") from None
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
    _check_pixels(w, h)


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


#: an image whose every channel spans at most this many grey levels is "flat"
FLAT_RANGE = 2


def check_not_flat(image: np.ndarray) -> None:
    """Raise :class:`FlatImageError` for a single-colour image (every pixel within
    ``FLAT_RANGE`` grey levels per channel): no explanation or mask can mean anything, and
    such images made GrabCut hang (see ``segmenters._one_colour_both_sides``)."""
    lo = image.reshape(-1, image.shape[-1]).min(0).astype(int)
    hi = image.reshape(-1, image.shape[-1]).max(0).astype(int)
    if int((hi - lo).max()) <= FLAT_RANGE:
        raise FlatImageError(
            f"the image is one flat colour (RGB {tuple(int(v) for v in lo)}, every pixel within "
            f"{FLAT_RANGE} grey levels): nothing to segment"
        )

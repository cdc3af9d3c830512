"""Pooled backbone features of images, cached on disk.

The backbone is frozen (by default), so every image's pooled feature is computed once and
cached, keyed by backbone, image file and preprocessing; fitting a head on cached features
takes seconds, so a second fit with other head settings reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from ewc_fo.models.classifier import Classifier
from ewc_fo.runtime.errors import ImageLoadError
from ewc_fo.runtime.images import load_image

if TYPE_CHECKING:
    from ewc_fo.models.fit_model import FittedModel

FEATURE_CACHE_VERSION = 1
#: the bar shows whole images even when it moves by half a pass (the plain and the mirrored forward)
BAR_FORMAT = "{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def default_cache_dir() -> Path:
    """``$EWC_FO_CACHE_DIR/features`` or ``~/.cache/ewc_fo/features``."""
    root = os.environ.get("EWC_FO_CACHE_DIR") or Path.home() / ".cache" / "ewc_fo"
    return Path(root).expanduser() / "features"


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
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Pooled backbone features (N, C) of ``clf.model`` (a :class:`FittedModel`), with the
    disk cache; returns them and how many images had to be computed.

    ``flip`` averages the features of each image and its mirror (cheap test-time
    augmentation, consistent with a linear head on pooled features).
    ``cache_dir=False`` disables the cache. ``progress(done, total)`` counts the images
    computed (cached ones are not work), after every pass.
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
        # per image, with rate and ETA: a batch of 16 at fit size 448 is ~40 s on a 2-core CPU
        bar = tqdm(total=len(todo), disable=not (verbose and todo), desc="features", unit="img",
                   dynamic_ncols=True, bar_format=BAR_FORMAT)
        # on a CPU a pass of 4 images costs per image what one of 16 does (a pass of 1 costs ~3.5x),
        # and the bar moves 4x as often; with ``flip`` it moves after each of the pass's two forwards
        step = batch_size if clf.device.type != "cpu" else min(batch_size, 4)
        for s in range(0, len(todo), step):
            idx = todo[s : s + step]
            x = clf.preprocess([load_image(paths[i]) for i in idx], size)
            x = x.contiguous(memory_format=torch.channels_last)
            f = model.pooled(x)
            if flip:
                bar.update(len(idx) / 2)
                f = (f + model.pooled(torch.flip(x, dims=[-1]))) / 2
            for i, row in zip(idx, f.float().cpu().numpy()):
                feats[i] = row
                if folder is not None:
                    tmp = folder / f"{keys[i]}.{os.getpid()}.tmp.npy"
                    np.save(tmp, row)
                    os.replace(tmp, folder / f"{keys[i]}.npy")
            bar.update(len(idx) / 2 if flip else len(idx))
            if progress is not None:
                progress(s + len(idx), len(todo))
        bar.close()
    model.to(memory_format=torch.contiguous_format)
    return np.stack(feats).astype(np.float32), len(todo)


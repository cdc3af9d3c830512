"""``label --segmentation-model`` on a real two-node Ray cluster (issue 21: "Ray workers as today").

Each worker loads the trained model once (its actor holds a ``SegModelLabeler``), and the
run is bit-identical to an in-process run of the same model, a killed worker included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from ._cluster import netns_available
from .test_ray_cluster import N, _assert_identical, _dump, _finish, _make, _wait_status

pytestmark = [pytest.mark.ray, pytest.mark.skipif(netns_available() is not None,
                                                  reason=str(netns_available()))]


@pytest.fixture(scope="module")
def model(cluster):
    _make(cluster, "segtrainset")
    path = f"{cluster.tmp}/seg.safetensors"
    cluster.scenario("segtrain", "segtrainset", path)
    return path


@pytest.fixture(scope="module")
def reference(cluster, model):
    """The in-process run every Ray run must match."""
    _make(cluster, "segref")
    cluster.scenario("seglabel", "segref", f"{cluster.tmp}/out/segref", model)
    return _dump(cluster, "segref")


def test_two_workers_load_the_model_and_match_in_process_when_one_is_killed(cluster, model, reference):
    _make(cluster, "segkill")
    status = f"{cluster.tmp}/segkill.status.json"
    p = cluster.popen([sys.executable, "-m", "tests.distributed._scenario", "seglabel", "segkill",
                       f"{cluster.tmp}/out/segkill", model, "--ray", cluster.address, "--workers", "2",
                       "--status", status], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        st = _wait_status(p, status, lambda s: s["workers"] and s["done"] >= 2)
        assert [w["engine"] for w in st["workers"]] == ["SegModelLabeler"] * 2  # the model, not EWC
        assert len({w["node"] for w in st["workers"]}) == 2
        assert st["done"] < N
        os.kill(st["workers"][0]["pid"], signal.SIGKILL)  # mid-run: Ray restarts it, the batch is redone
        _finish(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(status) as f:
        st = json.load(f)
    assert st["succeeded"] == N - 1 and st["errors"] == {"unreadable_image": 1}
    got = _dump(cluster, "segkill")
    _assert_identical(got, reference)
    assert not any(f.startswith("ewc_heatmap_") and f != "ewc_heatmap_fused" for f in got["fields"])


def test_cli_runs_the_model_on_ray(cluster, model, reference):
    _make(cluster, "segcli")
    cluster.scenario_cli("label", "segcli", "--label-field", "labels", "--segmentation-model", model,
                         "--ray", cluster.address, "--workers", "2", "--batch-size", "2",
                         "--output-dir", f"{cluster.tmp}/out/segcli")
    _assert_identical(_dump(cluster, "segcli"), reference)

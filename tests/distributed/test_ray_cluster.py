"""Label runs on a real two-node Ray cluster over a real mongod, with faults injected.

Every run is compared, field by field and file by file, with an in-process run of the
same images: a Ray run must be bit-identical to it, whatever died along the way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ._cluster import NetnsCluster, netns_available

pytestmark = [pytest.mark.ray, pytest.mark.skipif(netns_available() is not None,
                                                  reason=str(netns_available()))]

N = 16


@pytest.fixture(scope="module")
def reference(cluster):
    """The in-process run every Ray run must match."""
    _make(cluster, "reference")
    cluster.scenario("label", "reference", f"{cluster.tmp}/out/reference")
    return _dump(cluster, "reference")


def _make(c: NetnsCluster, name: str) -> None:
    c.scenario("make", name, str(N), f"{c.tmp}/imgs/{name}")


def _dump(c: NetnsCluster, name: str) -> dict:
    path = f"{c.tmp}/{name}.json"
    c.scenario("dump", name, f"{c.tmp}/out/{name}", path)
    with open(path) as f:
        return json.load(f)


def _start_label(c: NetnsCluster, name: str, *extra: str) -> tuple[subprocess.Popen, str]:
    status = f"{c.tmp}/{name}.status.json"
    if os.path.exists(status):
        os.remove(status)
    p = c.popen([sys.executable, "-m", "tests.distributed._scenario", "label", name, f"{c.tmp}/out/{name}",
                 "--ray", c.address, "--status", status, *extra],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, status


def _wait_status(p: subprocess.Popen, status: str, until, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(status):
            with open(status) as f:
                st = json.load(f)
            if until(st):
                return st
        if p.poll() is not None:
            raise AssertionError(f"the run ended first ({p.returncode}): {p.stderr.read()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no such progress within {timeout} s")


def _finish(p: subprocess.Popen, timeout: float = 600) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return out


def _assert_identical(got: dict, want: dict) -> None:
    """Same samples, no lost or duplicated ones, every field and file bit-identical."""
    assert got["n_samples"] == want["n_samples"] == N
    assert got["status"] == "complete" and got["fields"] == want["fields"]
    assert got["files"] == want["files"]  # no file missing, none extra
    assert got["samples"].keys() == want["samples"].keys()
    for name, vals in want["samples"].items():
        assert got["samples"][name] == vals, name
    labeled = [n for n, v in got["samples"].items() if v["ewc_confidence"] is not None]
    failed = [n for n, v in got["samples"].items() if v["ewc_error"] is not None]
    assert len(labeled) == N - 1 and len(failed) == 1  # the unreadable image, alone
    assert got["samples"][failed[0]]["ewc_error_kind"] == "unreadable_image"


def _marked(dump: dict) -> list[str]:
    """Samples marked finished (labeled, or failed with an error)."""
    return [n for n, v in dump["samples"].items()
            if v["ewc_confidence"] is not None or v["ewc_error"] is not None]


def test_two_workers_match_in_process_when_a_worker_is_killed(cluster, reference):
    _make(cluster, "killworker")
    p, status = _start_label(cluster, "killworker", "--workers", "2")
    try:
        st = _wait_status(p, status, lambda s: s["workers"] and s["done"] >= 2)
        nodes = {w["node"] for w in st["workers"]}
        assert len(nodes) == 2, "the two workers should run on the two nodes"
        assert st["done"] < N
        os.kill(st["workers"][0]["pid"], signal.SIGKILL)  # mid-batch: each has batches queued
        _finish(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(status) as f:
        st = json.load(f)
    assert st["succeeded"] == N - 1 and st["skipped"] == 0 and st["errors"] == {"unreadable_image": 1}
    # progress (issue 22 item 9): per finished batch of 2, never back, a redone batch counted once
    assert st["history"] == list(range(2, N + 1, 2)), st["history"]
    _assert_identical(_dump(cluster, "killworker"), reference)


def test_worker_node_killed_then_the_batch_is_redone(cluster, reference):
    _make(cluster, "killnode")
    # half a CPU each: the head can take the second worker when its node dies
    p, status = _start_label(cluster, "killnode", "--workers", "2", "--cpus", "0.5")
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
            cluster.add_worker_node()  # the next test gets two nodes again
    _assert_identical(_dump(cluster, "killnode"), reference)


def test_driver_killed_then_the_same_command_resumes(cluster, reference):
    _make(cluster, "killdriver")
    p, status = _start_label(cluster, "killdriver", "--workers", "2", "--write-every", "1")
    try:
        _wait_status(p, status, lambda s: s["done"] >= 4)
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    partial = _dump(cluster, "killdriver")
    marked = _marked(partial)
    assert 0 < len(marked) < N and partial["status"] == "running"
    for n in marked:  # nothing half-written is marked finished
        assert partial["samples"][n] == reference["samples"][n]
    # the same command again, through the CLI
    cli = cluster.scenario_cli("label", "killdriver", "--label-field", "labels", "--segmenter", "grabcut",
                               "--explain-size", "96", "--batch-size", "2",
                               "--output-dir", f"{cluster.tmp}/out/killdriver",
                               "--ray", cluster.address, "--workers", "2", "--threads-per-worker", "1")
    assert f"{len(marked)} already done, of {N}" in cli.stdout
    _assert_identical(_dump(cluster, "killdriver"), reference)


def test_database_lost_gives_a_clear_error_and_resume_finishes(cluster, reference):
    _make(cluster, "killdb")
    p, status = _start_label(cluster, "killdb", "--workers", "2", "--write-every", "1")
    try:
        _wait_status(p, status, lambda s: s["done"] >= 4)
        cluster.kill_db()
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        cluster.start_db()
    assert p.returncode != 0
    assert "FiftyOne database" in err and "run the same command" in err  # one clear line
    partial = _dump(cluster, "killdb")
    marked = _marked(partial)
    assert len(marked) < N
    for n in marked:
        assert partial["samples"][n] == reference["samples"][n]
    # resumed through the plugin's compute operator, with its Ray cluster address field
    out = cluster.scenario("operator", "killdb", f"{cluster.tmp}/out/killdb", "--ray", cluster.address).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["already_done"] == len(marked) and res["labeled"] + res["failed"] == N - len(marked)
    _assert_identical(_dump(cluster, "killdb"), reference)

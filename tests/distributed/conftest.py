"""One real Ray cluster for every Ray test of a run: starting one (two nodes and a mongod in a
network namespace) takes a minute or more, and each test leaves it whole — a test that kills a
node or the database brings it back, and :meth:`NetnsCluster.heal` mends what one did not.

The ONNX SAM pair, where setup.sh installed it, is named to the cluster's processes by
``$EWC_SAM_ONNX`` (they inherit the environment when the cluster starts); runs choose their
segmenter explicitly, so the GrabCut tests are unaffected by it."""

from __future__ import annotations

import os

import pytest

from ewc_fo.segmenters import onnx_files

from ._cluster import NetnsCluster, netns_available


@pytest.fixture(scope="session")
def cluster():
    why = netns_available()
    if why is not None:
        pytest.skip(why)
    old = os.environ.get(onnx_files.ENV)
    pair = onnx_files.default_dir()
    if old is None and (pair / "encoder.onnx").is_file() and (pair / "sam.onnx").is_file():
        os.environ[onnx_files.ENV] = str(pair)
    c = NetnsCluster()
    try:
        yield c
    finally:
        c.close()
        if old is None:
            os.environ.pop(onnx_files.ENV, None)


@pytest.fixture(autouse=True)
def _whole_cluster(request):
    """Before each test that uses it: the cluster has its database and both nodes."""
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").heal()

"""Test-session setup shared by every test package.

FiftyOne reads its database location when first imported, so a private, throw-away
database server (``tests/_mongod.py``, reached by ``FIFTYONE_DATABASE_URI``) and dataset
directory are configured here, before any test imports it. The URI is always set, never
inherited: the suite must not reach a database it did not start.
"""

import os
import tempfile

import pytest

from tests._mongod import start_session_database

_TMP = tempfile.mkdtemp(prefix="ewc_fo_tests_")
os.environ["FIFTYONE_DATABASE_URI"] = start_session_database(_TMP)
os.environ["FIFTYONE_DATABASE_DIR"] = os.path.join(_TMP, "db")
os.environ.setdefault("FIFTYONE_DEFAULT_DATASET_DIR", os.path.join(_TMP, "datasets"))
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# `--segmenter auto` must not depend on what this machine's cache holds: without a named SAM it
# stays GrabCut in the suite (tests of the ONNX SAM name it, or set this to 1 themselves)
os.environ["EWC_AUTO_ONNX_SAM"] = "0"
os.environ.setdefault("EWC_FO_TEST_TMP", _TMP)
# models are never fetched from the internet by a test: the U²-Net-p download goes to a port
# nothing listens on (a test that wants a download serves the file itself), into a throw-away cache
os.environ["EWC_U2NET_URL"] = "http://127.0.0.1:9/u2netp.onnx"
os.environ["U2NET_HOME"] = os.path.join(_TMP, "u2net")


def pytest_collection_modifyitems(config, items):
    """For ``pytest -n N --dist loadgroup`` (scripts/test.sh): a file's tests stay on one worker (its
    module fixtures are made once), and every test on the shared Ray cluster
    (tests/distributed/conftest.py) on one worker too, scheduled first: they are the longest
    group, and one cluster serves them all."""
    def on_cluster(item) -> bool:
        return item.path.parent.name == "distributed" and "cluster" in getattr(item, "fixturenames", ())

    for item in items:
        item.add_marker(pytest.mark.xdist_group("ray-cluster" if on_cluster(item) else item.nodeid.split("::")[0]))
    items.sort(key=lambda item: not on_cluster(item))

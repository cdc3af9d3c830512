"""Test-session setup shared by every test package.

FiftyOne reads its database location when first imported, so a private, throw-away
database server (``tests/_mongod.py``, reached by ``FIFTYONE_DATABASE_URI``) and dataset
directory are configured here, before any test imports it. The URI is always set, never
inherited: the suite must not reach a database it did not start.
"""

import os
import tempfile

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


#: the files whose tests run on the one shared Ray cluster (tests/distributed/conftest.py)
RAY_CLUSTER_FILES = "tests/distributed/test_ray_"


def pytest_collection_modifyitems(config, items):
    """The Ray cluster's tests first: on two workers (scripts/test.sh) they are the longest
    group, so they start at once, beside everything else."""
    items.sort(key=lambda item: not str(item.path.relative_to(config.rootpath)).startswith(RAY_CLUSTER_FILES))


def pytest_xdist_make_scheduler(config, log):
    """``pytest -n N`` (scripts/test.sh): a file's tests stay on one worker (its module fixtures
    are made once), and every Ray cluster file on one worker too, so one cluster serves them all.
    (xdist's ``loadgroup`` marks do not reach its scheduler under pytest 9.)"""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the collection's order: the cluster first

    class FileOrClusterScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "ray-cluster" if path.startswith(RAY_CLUSTER_FILES) else path

    return FileOrClusterScheduling(config, log)

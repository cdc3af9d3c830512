"""Point FiftyOne at this repository's plugins before the plugin tests use it.

tests/conftest.py has already set a private database. FiftyOne may have been imported by
other test packages first, so its live config is updated as well as the environment
(which subprocesses — discovery, delegated worker, App server — inherit).
"""

from __future__ import annotations

import os
import sys

import pytest

PLUGINS_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "plugins"))
os.environ["FIFTYONE_PLUGINS_DIR"] = PLUGINS_DIR
if "fiftyone" in sys.modules:
    import fiftyone as fo

    fo.config.plugins_dir = PLUGINS_DIR

URI = "@ewc-fo/ewc"
FAST = dict(segmenter="grabcut", explain_size=160, explainers=["gradcam", "eigencam"], batch_size=2)


@pytest.fixture(scope="session")
def plugin_env():
    """Environment for subprocesses that must see the same database and plugins."""
    env = dict(os.environ)
    env["FIFTYONE_PLUGINS_DIR"] = PLUGINS_DIR
    root = os.path.abspath(os.path.join(PLUGINS_DIR, ".."))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env

"""``ewc-fo app``: the App opens with the ewc-fo plugin, without the user exporting anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import fiftyone as fo
import pytest

from ewc_fo.cli import main
from ewc_fo.commands.app import project_plugins_dir, register_plugins

from ..fo._data import make_dataset
from .conftest import PLUGINS_DIR, URI

LIST = ("import json, fiftyone.plugins as fop; "
        "print(json.dumps([p.name for p in fop.list_plugins(enabled='all')]))")


def _plugins_seen(plugins_dir):
    # as a user runs it: no plugins dir, FiftyOne's database validation left to the command
    env = {k: v for k, v in os.environ.items() if k not in ("FIFTYONE_PLUGINS_DIR", "FIFTYONE_DATABASE_VALIDATION")}
    if plugins_dir:
        env["FIFTYONE_PLUGINS_DIR"] = plugins_dir
    out = subprocess.run([sys.executable, "-c", LIST], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def no_plugins_dir(monkeypatch):
    monkeypatch.delenv("FIFTYONE_PLUGINS_DIR", raising=False)
    monkeypatch.setattr(fo.config, "plugins_dir", None)
    yield
    os.environ["FIFTYONE_PLUGINS_DIR"] = PLUGINS_DIR  # what tests/plugin/conftest.py set
    fo.config.plugins_dir = PLUGINS_DIR


def test_project_plugins_found():
    assert project_plugins_dir() == PLUGINS_DIR


def test_register_without_a_user_plugins_dir(no_plugins_dir):
    assert register_plugins() == PLUGINS_DIR
    assert fo.config.plugins_dir == PLUGINS_DIR and os.environ["FIFTYONE_PLUGINS_DIR"] == PLUGINS_DIR


def test_register_keeps_the_users_plugins(no_plugins_dir, tmp_path):
    user = tmp_path / "my_plugins" / "mine"
    user.mkdir(parents=True)
    (user / "fiftyone.yml").write_text('name: "@me/mine"\n')
    (user / "__init__.py").write_text("def register(p):\n    pass\n")
    fo.config.plugins_dir = str(user.parent)
    target = register_plugins(cache_dir=str(tmp_path / "cache"))
    assert target != str(user.parent) and sorted(os.listdir(user.parent)) == ["mine"]  # theirs untouched
    seen = _plugins_seen(target)
    assert "@me/mine" in seen and URI in seen
    assert register_plugins(cache_dir=str(tmp_path / "cache")) == target  # again: nothing changes


def test_app_command_launches_with_the_plugin(no_plugins_dir, monkeypatch, tmp_path):
    ds = make_dataset(str(tmp_path), "app-cmd", n=1)
    ds.save_view("ewc-low-confidence", ds.limit(1))
    launched = {}

    class Session:
        url = "http://localhost:5151"

        def wait(self, _):
            launched["plugins_dir"] = fo.config.plugins_dir

    def fake_launch(view, **kw):
        launched.update(kw, view_len=len(view))
        return Session()

    monkeypatch.setattr(fo, "launch_app", fake_launch)
    assert main(["app", "app-cmd", "--view", "ewc-low-confidence", "--remote", "--port", "5999"]) == 0
    assert launched["remote"] is True and launched["port"] == 5999 and launched["view_len"] == 1
    assert launched["plugins_dir"] == PLUGINS_DIR and os.environ["FIFTYONE_PLUGINS_DIR"] == PLUGINS_DIR
    assert URI in _plugins_seen(os.environ["FIFTYONE_PLUGINS_DIR"])


def test_app_command_serves_the_plugin(tmp_path):
    """The real command, as a user runs it (no FIFTYONE_PLUGINS_DIR): its App server lists the
    plugin's operators and panel."""
    import signal
    import socket
    import time
    import urllib.request

    ds = make_dataset(str(tmp_path), "app-cmd-real", n=1)
    ds.persistent = True
    ds.save_view("ewc-low-confidence", ds.limit(1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # as a user runs it: no plugins dir, FiftyOne's database validation left to the command
    env = {k: v for k, v in os.environ.items() if k not in ("FIFTYONE_PLUGINS_DIR", "FIFTYONE_DATABASE_VALIDATION")}
    env["PYTHONPATH"] = os.path.dirname(PLUGINS_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    env["HOME"] = str(tmp_path / "home")  # no user plugins dir, nothing written to the real home
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ewc_fo.cli", "app", ds.name, "--view", "ewc-low-confidence",
                             "--address", "127.0.0.1", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, got = time.time() + 120, None
        while got is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/operators", method="POST",
                                             data=json.dumps({"dataset_name": ds.name}).encode(),
                                             headers={"Content-Type": "application/json"})
                got = json.loads(urllib.request.urlopen(req, timeout=5).read())
            except OSError:
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "app.log").read_text()[-2000:]
                time.sleep(1)
        uris = {o["uri"] for o in got["operators"]}
        assert {f"{URI}/compute_ewc", f"{URI}/export_masks", f"{URI}/ewc_review", f"{URI}/review_accept"} <= uris
        time.sleep(12)  # FiftyOne's session client retries every 10 s while the server starts
        text = (tmp_path / "app.log").read_text()
        assert text.count("starting the App server") == 1, text[-2000:]
        assert "Could not connect session" not in text and "oldest supported" not in text, text[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the command and the App server it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        ds.delete()

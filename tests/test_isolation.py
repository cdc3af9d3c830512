"""The suite never reaches a user's FiftyOne database, even with that database's service running.

FiftyOne joins any running database *service* it finds, whatever ``FIFTYONE_DATABASE_DIR``
says; a user with the App open has one. This test starts such a service the way FiftyOne
does for a user (no ``FIFTYONE_DATABASE_URI``, its own database directory) holding a
dataset named like the demo's, runs the project's demo setup under the suite's own
environment (``tests/conftest.py``), and checks the user's dataset is untouched. A plain
process, set up as the user's, does see that dataset: the service really is joinable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from ewc_fo.demo import DEMO_DATASET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE_ARGS = ["--51-service", "db", "--multi"]

USER = textwrap.dedent("""
    import sys
    import fiftyone as fo
    ds = fo.Dataset(sys.argv[1])
    ds.add_sample(fo.Sample(filepath=sys.argv[2], owner="the user"))
    ds.persistent = True
    print("READY", flush=True)
    for line in sys.stdin:  # stay a client of the service until the test is done
        ds = fo.load_dataset(sys.argv[1]) if fo.dataset_exists(sys.argv[1]) else None
        if ds is not None:
            ds.reload()
        print("SEEN", None if ds is None else (len(ds.values("id")), ds.values("owner")), flush=True)
""")

READ = textwrap.dedent("""
    import sys
    import fiftyone as fo
    ds = fo.load_dataset(sys.argv[1]) if fo.dataset_exists(sys.argv[1]) else None
    print("SEEN", None if ds is None else (len(ds.values("id")), ds.values("owner")), flush=True)
""")

SUITE = textwrap.dedent("""
    import tests.conftest  # the suite's environment, exactly as pytest sets it up
    import fiftyone as fo
    from ewc_fo.demo import DEMO_DATASET, build_demo_dataset
    ds = build_demo_dataset(overwrite=True)
    print("BUILT", len(ds.values("id")), flush=True)
    fo.delete_dataset(DEMO_DATASET)
""")


def _services() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if all(a in cmd for a in SERVICE_ARGS):
            out.append(p)
    return out


def _mongods(dbpath: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if cmd and os.path.basename(cmd[0]).startswith("mongod") and dbpath in cmd:
            out.append(p)
    return out


def _user_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FIFTYONE_DATABASE_URI", "FIFTYONE_DATABASE_DIR", "FIFTYONE_DEFAULT_DATASET_DIR",
                        "FIFTYONE_PRIVATE_DATABASE_PORT", "FIFTYONE_DISABLE_SERVICES")}
    env["FIFTYONE_DATABASE_DIR"] = str(tmp_path / "user_db")
    env["FIFTYONE_DEFAULT_DATASET_DIR"] = str(tmp_path / "user_data")
    env["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


def _py(env, code, *args) -> str:
    p = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_users_running_database_is_untouched(tmp_path):
    if _services():
        pytest.skip("a FiftyOne database service is already running here: not ours to touch")
    env = _user_env(tmp_path)
    dbpath = env["FIFTYONE_DATABASE_DIR"]
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"")  # never read: only its path is stored
    user = subprocess.Popen([sys.executable, "-c", USER, DEMO_DATASET, str(photo)], env=env, cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert user.stdout.readline().strip() == "READY", user.stderr.read()[-3000:]
        assert _mongods(dbpath), "the user's service runs mongod on its own database directory"
        want = "SEEN (1, ['the user'])"
        assert want in _py(env, READ, DEMO_DATASET)  # control: a plain process joins that service

        assert "BUILT 4" in _py(env, SUITE)  # the suite rebuilds and deletes "its" demo dataset

        user.stdin.write("check\n")
        user.stdin.flush()
        assert user.stdout.readline().strip() == want  # ... and the user's is as it was
    finally:
        user.stdin.close()  # the user's last client leaves: FiftyOne stops the service
        try:
            user.wait(timeout=60)
        except subprocess.TimeoutExpired:
            user.kill()
            user.wait()
        deadline = time.time() + 30
        while _mongods(dbpath) and time.time() < deadline:
            time.sleep(0.2)
        for p in _mongods(dbpath):  # ours, if it outlived its service: stop it by pid
            p.terminate()
            p.wait(timeout=30)
    assert not _mongods(dbpath)

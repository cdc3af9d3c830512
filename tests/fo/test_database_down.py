"""The database killed in the middle of `ewc-fo label`: one line saying what happened and how
to resume, and the rerun, once the database is back, finishes the job."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

from tests._mongod import start_mongod, stop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAKE = ("import sys; from tests.fo._data import make_dataset; "
        "make_dataset(sys.argv[1], 'db-down', n=6).persistent = True")
LABEL = ["label", "db-down", "--label-field", "labels", "--segmenter", "grabcut", "--batch-size", "1",
         "--explainers", "gradcam,layercam", "--explain-size", "160"]


def _cli(env, *args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ewc_fo.cli", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_database_killed_mid_run(tmp_path):
    dbpath = str(tmp_path / "db")
    mongod, uri = start_mongod(dbpath)
    port = int(uri.rsplit(":", 1)[1])
    env = {**os.environ, "FIFTYONE_DATABASE_URI": uri,
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = str(tmp_path / "out")
    try:
        subprocess.run([sys.executable, "-c", MAKE, str(tmp_path / "imgs")], env=env, cwd=ROOT, check=True,
                       timeout=300)
        run = _cli(env, *LABEL, "--output-dir", out)
        deadline = time.time() + 300
        while not glob.glob(os.path.join(out, "masks", "*.png")):  # it is labeling
            assert run.poll() is None and time.time() < deadline, run.communicate()
            time.sleep(0.1)
        mongod.send_signal(signal.SIGKILL)
        mongod.wait()
        o, e = run.communicate(timeout=300)
        lines = [ln for ln in e.strip().splitlines() if "%|" not in ln]  # not the progress bar
        assert run.returncode == 2, (o, e)
        assert len(lines) == 1 and "Traceback" not in e, e
        assert lines[0].startswith("ewc-fo label: error: lost the connection to the FiftyOne database")
        assert "run the same command again" in lines[0]

        down = _cli(env, "summary", "db-down")  # still down: any command says so in one line
        o, e = down.communicate(timeout=300)
        assert down.returncode == 2 and len(e.strip().splitlines()) == 1 and "lost the connection" in e, e

        mongod, uri = start_mongod(dbpath, port)  # the database is back: the same command finishes
        again = _cli(env, *LABEL, "--output-dir", out)
        o, e = again.communicate(timeout=600)
        assert again.returncode == 0, e[-3000:]
        assert "failed" in o and "of 6 samples" in o
        summ = _cli(env, "summary", "db-down")
        o, e = summ.communicate(timeout=300)
        assert "status complete" in o and "labeled 6 of" in o, (o, e)  # "of": an estimated count after a crash
    finally:
        stop(mongod)


def test_commands_give_up_on_a_missing_database_in_seconds(tmp_path):
    """Commands connect with a 10 s server selection timeout (pymongo's default is 30 s)."""
    # the early pymongo lookup (commands/_lookup.py) answers nothing when the database is down:
    # it returns and FiftyOne connects, which is the path measured here
    code = ("import fiftyone.core.odm.database as d; from ewc_fo.commands._common import load_view; "
            "from ewc_fo.runtime.errors import ConfigError\n"
            "import ewc_fo.commands._lookup as lookup; lookup.early_check = lambda *a, **k: None\n"
            "try:\n    load_view('no-such-dataset')\nexcept ConfigError:\n    pass\n"
            "print('TIMEOUT', d.get_db_client().options.server_selection_timeout)")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "TIMEOUT 10.0" in p.stdout, p.stderr[-2000:]
    env["FIFTYONE_DATABASE_URI"] += "/?serverSelectionTimeoutMS=4000"  # the user's own setting wins
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "TIMEOUT 4.0" in p.stdout, p.stderr[-2000:]

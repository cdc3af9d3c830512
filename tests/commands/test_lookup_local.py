"""Early answers with FiftyOne's own local database (issue 22 item 8): when FiftyOne's database
service already runs (an open App or notebook), a typo is answered from it before FiftyOne is
imported; when none runs, the lookup steps aside and FiftyOne's usual path answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ewc_fo.commands import _lookup

ROOT = Path(__file__).parents[2]
NAME = "ewc-lookup-local"

_HOLDER = f"""
import sys
import fiftyone as fo
if fo.dataset_exists({NAME!r}):
    fo.delete_dataset({NAME!r})
d = fo.Dataset({NAME!r}, persistent=True)
d.add_sample_field("labels", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
print("ready", flush=True)
sys.stdin.read()  # until the test closes it
d.delete()
"""

_PROBE = """
import json, sys
from ewc_fo.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    rc = main(argv)
    out.append({"rc": rc, "fiftyone": "fiftyone" in sys.modules})
print(json.dumps(out))
"""


@pytest.fixture
def local_env(tmp_path):
    """FiftyOne with no database URI: it runs (or joins) its own local database service."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FIFTYONE_DATABASE_URI", "FIFTYONE_PRIVATE_DATABASE_PORT", "EWC_SAM2_CHECKPOINT")}
    env.update(FIFTYONE_DATABASE_DIR=str(tmp_path / "db"), FIFTYONE_CONFIG_PATH=str(tmp_path / "none.json"),
               FIFTYONE_DATABASE_VALIDATION="false", FIFTYONE_DO_NOT_TRACK="true",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _probe(cases: list[list[str]], env: dict) -> tuple[list[dict], str]:
    p = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cases)], capture_output=True, text=True,
                       timeout=300, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def test_typos_answered_from_a_running_local_service_without_fiftyone(local_env):
    if _lookup.running_service_uri() is not None:
        # FiftyOne joins a running service whatever its folder: someone's; ask it, write nothing
        results, err = _probe([["label", "ewc-no-such-dataset-x9", "--label-field", "labels"]], local_env)
        assert results == [{"rc": 2, "fiftyone": False}], err
        assert "no FiftyOne dataset named 'ewc-no-such-dataset-x9'" in err
        return
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], env=local_env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = holder.stdout.readline()
        assert line.strip() == "ready", holder.stderr.read()[-2000:] if holder.poll() is not None else line
        results, err = _probe([["label", NAME[:-1] + "x", "--label-field", "labels"],
                               ["label", NAME, "--label-field", "lables"]], local_env)
        assert [r["rc"] for r in results] == [2, 2], err
        assert [r["fiftyone"] for r in results] == [False, False], err  # answered before FiftyOne
        assert f"did you mean {NAME!r}?" in err and "did you mean 'labels'?" in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)


def test_no_running_service_keeps_the_usual_path(monkeypatch):
    import psutil

    for k in ("FIFTYONE_DATABASE_URI", "FIFTYONE_PRIVATE_DATABASE_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("FIFTYONE_CONFIG_PATH", "/nonexistent/config.json")
    monkeypatch.setattr(psutil, "process_iter", lambda *a, **k: iter([]))
    assert _lookup.running_service_uri() is None and _lookup.database_uri() is None
    _lookup.early_check("no-such-dataset", "labels")  # steps aside: FiftyOne's checks answer later
    monkeypatch.setenv("FIFTYONE_PRIVATE_DATABASE_PORT", "27123")  # a parent FiftyOne found the port
    assert _lookup.database_uri() == "mongodb://127.0.0.1:27123"

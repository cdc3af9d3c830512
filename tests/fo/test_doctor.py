"""`ewc-fo doctor`: each row says what a run would get here, and a missing database fails it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ewc_fo.cli import main
from ewc_fo.commands.doctor import _redact

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rows(capsys, *args) -> tuple[int, dict]:
    rc = main(["doctor", "--json", *args])
    return rc, {r["name"]: r for r in json.loads(capsys.readouterr().out)}


def test_doctor_reports_this_machine(capsys, monkeypatch):
    monkeypatch.delenv("EWC_SAM2_CHECKPOINT", raising=False)
    rc, rows = _rows(capsys)
    assert rc == 0
    assert rows["torch"]["ok"] and rows["torch"]["required"]
    assert rows["FiftyOne database"]["ok"] and rows["FiftyOne database"]["required"]
    import fiftyone.constants as foc

    ver = rows["MongoDB version"]  # checked once here; the other commands keep FiftyOne's warning quiet
    assert ver["ok"] and f"FiftyOne needs {foc.MONGODB_MIN_VERSION} or newer" in ver["detail"]
    seg = rows["segmenter (auto)"]
    assert not seg["ok"] and seg["detail"].startswith("GrabCut") and "--sam2-checkpoint" in seg["hint"]
    import torch

    assert rows["GPU"]["ok"] == torch.cuda.is_available()
    from ewc_fo.models.objectness import objectness_available

    assert rows["objectness (U²-Net-p)"]["ok"] == objectness_available()
    assert main(["doctor"]) == 0  # the table form
    out = capsys.readouterr().out
    assert "segmenter (auto)" in out and "-> pass --sam2-checkpoint" in out


def test_doctor_says_which_sam2_checkpoint_auto_would_use(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("EWC_SAM2_CHECKPOINT", str(tmp_path / "missing.pt"))
    _, rows = _rows(capsys, "--no-database")
    assert "FiftyOne database" not in rows
    seg = rows["segmenter (auto)"]
    assert not seg["ok"] and "not found" in seg["detail"]
    ckpt = tmp_path / "sam2.1_hiera_tiny.pt"
    ckpt.write_bytes(b"weights")
    monkeypatch.setenv("EWC_SAM2_CHECKPOINT", str(ckpt))
    _, rows = _rows(capsys, "--no-database")
    assert rows["segmenter (auto)"]["ok"] and str(ckpt) in rows["segmenter (auto)"]["detail"]
    monkeypatch.setenv("EWC_SAM2_CHECKPOINT", "facebook/sam2.1-hiera-tiny")
    _, rows = _rows(capsys, "--no-database")
    assert rows["segmenter (auto)"]["ok"] and "Hugging Face" in rows["segmenter (auto)"]["detail"]


def test_doctor_fails_without_a_database():
    # a port nothing listens on: refused at once, reported within the doctor's own timeout
    env = {**os.environ, "FIFTYONE_DATABASE_URI": "mongodb://127.0.0.1:9/?directConnection=true",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "ewc_fo.cli", "doctor"], env=env, cwd=ROOT, text=True,
                       capture_output=True, timeout=120)
    assert p.returncode == 1, p.stderr
    line = next(ln for ln in p.stdout.splitlines() if "FiftyOne database" in ln)
    assert line.startswith("FAIL") and "not reachable" in line
    assert "FIFTYONE_DATABASE_URI" in p.stdout


def test_database_uri_password_is_never_printed():
    assert _redact("mongodb://ewc:s3cret@db.lan:27017/x") == "mongodb://ewc:***@db.lan:27017/x"
    assert _redact("mongodb://127.0.0.1:27017") == "mongodb://127.0.0.1:27017"


def test_commands_keep_fiftyones_database_warning_out(tmp_path):
    """Issue 22 item 7: FiftyOne warns "oldest supported version" on every connection to
    MongoDB 6 (the one its package ships); a command's output must not carry it."""
    import os
    import subprocess
    import sys

    import fiftyone as fo

    ds = fo.Dataset(persistent=True)
    try:
        env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_DATABASE_VALIDATION"}
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        res = subprocess.run([sys.executable, "-m", "ewc_fo.cli", "summary", ds.name], env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "no ewc-fo runs yet" in res.stdout
        assert "oldest supported" not in res.stdout + res.stderr
    finally:
        ds.delete()

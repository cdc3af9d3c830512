"""Delegated execution: an operation queued from Python is run by a real `fiftyone delegated launch`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionRunState

from ..fo._data import make_dataset
from .conftest import FAST, URI


def test_compute_delegated_runs_in_worker(tmp_path, plugin_env):
    ds = make_dataset(str(tmp_path / "imgs"), "plugin-delegated", n=2)
    ds.persistent = True  # the worker is another process
    try:
        res = foo.execute_operator(f"{URI}/compute_ewc", ctx=dict(
            view=ds.view(), request_delegation=True,
            params=dict(label_field="labels", prefix="dlg", **FAST)))
        assert res.delegated
        op_id = res.result["id"]
        dos = DelegatedOperationService()
        assert dos.get(op_id).run_state == ExecutionRunState.QUEUED
        assert "dlg_confidence" not in ds.get_field_schema()  # nothing ran yet

        fiftyone_cli = os.path.join(os.path.dirname(sys.executable), "fiftyone")
        log = open(tmp_path / "worker.log", "w")
        worker = subprocess.Popen([fiftyone_cli, "delegated", "launch", "-t", "local"], env=plugin_env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 240
            while time.time() < deadline:
                state = dos.get(op_id).run_state
                if state in (ExecutionRunState.COMPLETED, ExecutionRunState.FAILED):
                    break
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                time.sleep(1)
        finally:
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()
        doc = dos.get(op_id)
        assert doc.run_state == ExecutionRunState.COMPLETED, (
            f"{doc.run_state}: {getattr(doc.result, 'error', None)}\n" + (tmp_path / "worker.log").read_text()[-3000:])
        assert doc.result.result["labeled"] == 2
        assert doc.status is not None and doc.status.progress == 1.0  # ctx.set_progress reached the run
        assert "img/s" in (doc.status.label or "")
        ds.reload()
        assert len(ds.exists("dlg_confidence")) == 2
        assert "dlg-low-confidence" in ds.list_saved_views()
    finally:
        ds.delete()

"""Internal errors in a row are the environment's fault, not the samples' (issue 23)."""

from __future__ import annotations

import pytest

from ewc_fo.fo.runs.outcome import INTERNAL_STREAK, FaultGuard, LabelSummary
from ewc_fo.runtime.errors import EnvironmentFaultError

OK = {"confidence": 0.5}
BAD = {"error": "not a label", "error_kind": "unknown_class"}
INTERNAL = {"error": "internal error: InvalidProtobuf: bad file", "error_kind": "internal"}


def test_a_lone_internal_error_fails_its_sample_once_the_next_result_arrives():
    s = LabelSummary("ewc", 4)
    g = FaultGuard(s)
    assert g.add("a", INTERNAL) == []  # held: whose fault is not known yet
    assert g.add("b", OK) == [("a", INTERNAL), ("b", OK)]
    assert g.add("c", INTERNAL) == [] and g.release() == [("c", INTERNAL)]
    assert s.succeeded == 1 and s.errors == {"internal": 2}
    assert FaultGuard(s).add("d", BAD) == [("d", BAD)]


def test_internal_errors_in_a_row_stop_the_run_and_record_none_of_them():
    s = LabelSummary("ewc", 5)
    g = FaultGuard(s)
    assert g.add("ok", OK) == [("ok", OK)]
    for i in range(INTERNAL_STREAK - 1):
        assert g.add(str(i), INTERNAL) == []
    with pytest.raises(EnvironmentFaultError) as e:
        g.add("last", INTERNAL)
    assert "InvalidProtobuf" in str(e.value) and "\n" not in str(e.value)
    assert s.succeeded == 1 and not s.errors  # the held samples were never counted or written


def test_a_filesystem_fault_on_every_sample_stops_the_run_unmarked_and_the_rerun_redoes_them(tmp_path):
    """A real environment fault: after the first batch, the run's maps folder is replaced by
    a file, so writing every later sample fails alike. The run stops with one line; the
    first batch stays done, the rest is not marked failed and the next run labels it."""
    import os
    import shutil

    import ewc_fo
    from ewc_fo.engine.pipeline import EWCConfig
    from ewc_fo.fo.runs import record as runs
    from ewc_fo.segmenters import create_segmenter

    from ._data import make_dataset

    ds = make_dataset(str(tmp_path / "imgs"), "fault-guard-disk", n=8)
    out = tmp_path / "out"
    cfg = EWCConfig(explain_size=160, explainers=("gradcam", "layercam"))

    def break_the_maps_folder(done, total):
        if done == 2 and (out / "maps").is_dir():
            shutil.rmtree(out / "maps")
            (out / "maps").write_text("not a folder")

    try:
        with pytest.raises(EnvironmentFaultError, match="3 samples in a row failed with an internal error"):
            ewc_fo.label(ds, "labels", segmenter=create_segmenter("grabcut"), config=cfg, batch_size=2,
                         write_every=1, progress_bar=False, output_dir=str(out), progress=break_the_maps_folder)
        ds.reload()
        assert len(ds.exists("ewc_confidence")) == 2 and len(ds.exists("ewc_error")) == 0
        assert runs.get_run(ds, "ewc")["status"] == "running"
        os.remove(out / "maps")  # the fault fixed
        s = ewc_fo.label(ds, "labels", segmenter=create_segmenter("grabcut"), config=cfg,
                         progress_bar=False, output_dir=str(out))
        assert s.skipped_done == 2 and s.succeeded == 6 and not s.errors
        assert runs.get_run(ds, "ewc")["status"] == "complete"
    finally:
        ds.delete()


def test_a_run_whose_every_sample_failed_does_not_exit_0(tmp_path, capsys):
    import fiftyone as fo
    import numpy as np
    from PIL import Image

    from ewc_fo.cli import main

    ds = fo.Dataset("fault-guard-all-flat")
    for i in range(2):
        p = str(tmp_path / f"flat{i}.png")
        Image.fromarray(np.full((64, 80, 3), 40 * i, np.uint8)).save(p)
        ds.add_sample(fo.Sample(filepath=p, labels=fo.Classification(label="tabby")))
    try:
        rc = main(["label", ds.name, "--label-field", "labels", "--segmenter", "grabcut", "--explain-size", "160",
                   "--explainers", "gradcam,layercam", "--output-dir", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and err[-1].startswith("ewc-fo label: error: every one of the 2 samples"), (rc, err)
    finally:
        ds.delete()


def test_wait_outlasting_a_run_that_finished_the_work_is_success(tmp_path):
    """Issue 23 (5): --wait for another process that then finishes the same run says so
    and succeeds (it was "already labeled", exit 2)."""
    import threading

    import ewc_fo
    from ewc_fo.engine.pipeline import EWCConfig
    from ewc_fo.fo.runs.claims import claim_prefix
    from ewc_fo.segmenters import create_segmenter

    from ._data import make_dataset

    ds = make_dataset(str(tmp_path / "imgs"), "fault-guard-wait", n=2)
    kw = {"segmenter": create_segmenter("grabcut"), "progress_bar": False, "output_dir": str(tmp_path / "o"),
          "config": EWCConfig(explain_size=160, explainers=("gradcam", "layercam"))}
    try:
        assert ewc_fo.label(ds, "labels", **kw).succeeded == 2
        other = claim_prefix(ds, "ewc")  # another holder, as the run this one waits for
        started = threading.Event()
        t = threading.Thread(target=lambda: (started.wait(), other.release()))
        t.start()
        import ewc_fo.fo.runs.claims as claims

        real = claims.Lease.try_acquire

        def try_acquire(self):
            got = real(self)
            if got is not None:
                started.set()  # this run now waits on the other holder: let it finish
            return got

        claims.Lease.try_acquire = try_acquire
        try:
            s = ewc_fo.label(ds, "labels", wait_s=120, **kw)
        finally:
            claims.Lease.try_acquire = real
            started.set()
            t.join()
        assert s.skipped_done == 2 and s.succeeded == 0 and "finished this run while this one waited" in str(s)
    finally:
        ds.delete()

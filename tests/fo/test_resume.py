"""A real run killed with SIGKILL mid-way resumes to exactly the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import fiftyone as fo
import numpy as np
from PIL import Image

import ewc_fo
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.segmenters import create_segmenter

from ._data import make_dataset

N = 8
RUN = textwrap.dedent("""
    import sys, ewc_fo, fiftyone as fo
    from ewc_fo.engine.pipeline import EWCConfig
    ds = fo.load_dataset(sys.argv[1])
    ewc_fo.label(ds, "labels", segmenter="grabcut", config=EWCConfig(explain_size=160),
                 batch_size=2, write_every=1, progress_bar=False, output_dir=sys.argv[2])
""")


def _result(ds, prefix="ewc"):
    out = {}
    for s in ds.select_fields([f"{prefix}_mask", f"{prefix}_confidence", f"{prefix}_scores"]):
        out[os.path.basename(s.filepath)] = (
            np.asarray(Image.open(s[f"{prefix}_mask"].mask_path)),
            s[f"{prefix}_confidence"],
            s[f"{prefix}_scores"],
        )
    return out


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    ds = make_dataset(str(tmp_path / "imgs"), "resume-killed", n=N)
    ds.persistent = True
    ref = ds.clone("resume-reference")
    try:
        proc = subprocess.Popen([sys.executable, "-c", RUN, ds.name, str(tmp_path / "out")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 300
        done = 0
        while time.time() < deadline and proc.poll() is None:
            ds.reload()
            if "ewc_confidence" in ds.get_field_schema():
                done = len(ds.exists("ewc_confidence"))
            if done >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ds.reload()
        marked = len(ds.exists("ewc_confidence"))
        assert 3 <= marked < N, marked
        # nothing half-written looks complete: every marked sample has all its fields
        for s in ds.exists("ewc_confidence"):
            assert s.ewc_mask is not None and os.path.exists(s.ewc_mask.mask_path)
            assert s.ewc_scores and os.path.exists(s.ewc_maps_path)

        summary = ewc_fo.label(ds, "labels", segmenter=create_segmenter("grabcut"),
                               config=EWCConfig(explain_size=160), progress_bar=False,
                               output_dir=str(tmp_path / "out"))
        assert summary.skipped_done == marked and summary.succeeded == N - marked
        assert ds.get_run_info("ewc").config.serialize()["status"] == "complete"

        ewc_fo.label(ref, "labels", segmenter=create_segmenter("grabcut"),
                     config=EWCConfig(explain_size=160), batch_size=2, progress_bar=False,
                     output_dir=str(tmp_path / "ref"))
        got, want = _result(ds), _result(ref)
        assert got.keys() == want.keys() and len(got) == N
        for k in want:
            assert np.array_equal(got[k][0], want[k][0]), k
            assert got[k][1] == want[k][1] and got[k][2] == want[k][2], k
        assert len(ds.exists("ewc_confidence")) == N  # none lost, none duplicated
        assert len(ds) == N
    finally:
        for name in ("resume-killed", "resume-reference"):
            if fo.dataset_exists(name):
                fo.delete_dataset(name)

"""Ctrl-C on `ewc-fo label` stops the run at once, exit 130 and one line, at any moment:
while GrabCut is stuck in C code, and at every point a run passes (fields declared, a batch
explained, a cut, a flush before its markers, the run's end). Nothing is marked finished
that is not: resuming after each interrupt ends with the uninterrupted run's result.

The children install Python's SIGINT handler themselves, as a terminal's foreground job
has it: a suite started with ``cmd &`` from a script hands its children SIGINT *ignored*,
and Python keeps it ignored (the cause of issue 25's two "lost" signals). No test depends
on the machine's speed: the stuck GrabCut truly never returns, and every other Ctrl-C is
sent by the child itself at the named point.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import fiftyone as fo
import numpy as np
from PIL import Image

import ewc_fo
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.fo.runs import record as runs
from ewc_fo.segmenters import create_segmenter

from ._data import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESSAGE = "interrupted; run the same command again to resume"
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

# the CLI in a child with both guards off (flat-image check, GrabCut's dominant-colour
# check), so a flat grey image reaches cv2.grabCut, which here blocks in C for ever after
# saying "in grabcut" (the synchronisation point)
STUCK = textwrap.dedent("""
    import os, signal, sys, threading
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import cv2
    from ewc_fo.engine import maps
    from ewc_fo.segmenters import grabcut as segmenters
    maps.check_not_flat = lambda image: None
    segmenters._one_colour_both_sides = lambda *a: False
    never = os.pipe()[0]
    def stuck(*a):
        print("in grabcut", flush=True)
        os.read(never, 1)  # nothing ever writes: a C call that does not return
    cv2.grabCut = stuck
    from ewc_fo.cli import main
    sys.exit(main(sys.argv[1:]))
""")

# the CLI in a child that sends itself SIGINT at the AT-th time it reaches POINT
# (argv[1] = "POINT:AT"); every batch is written at once (write_every=1)
AT_POINT = textwrap.dedent("""
    import functools, os, signal, sys, threading
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import cv2
    import fiftyone as fo
    import ewc_fo.engine.pipeline as pipeline
    import ewc_fo.fo.runs.label as L
    import ewc_fo.fo.runs.plan as plan
    point, at = sys.argv[1].split(":")
    seen, lock = [0], threading.Lock()
    def ctrl_c(name):
        with lock:
            if name != point:
                return
            seen[0] += 1
            if seen[0] == int(at):
                os.kill(os.getpid(), signal.SIGINT)
    def before(owner, attr, name, when=lambda *a, **k: True):
        real = getattr(owner, attr)
        def hooked(*a, **k):
            if when(*a, **k):
                ctrl_c(name)
            return real(*a, **k)
        setattr(owner, attr, hooked)
    declare = plan._declare_fields
    def declared(*a):
        declare(*a)
        ctrl_c("declared")
    plan._declare_fields = declared
    before(pipeline, "explain", "explain")
    before(cv2, "grabCut", "grabcut")  # runs in a GrabCut thread: the signal comes from there
    # the markers themselves (P_class_confidence also ends in "_confidence" but is written before the mask)
    before(fo.Dataset, "set_values", "marker", lambda self, field, *a, **k: field in ("ewc_confidence", "ewc_error"))
    before(L, "finish_run", "finish")
    L.label = functools.partial(L.label, write_every=1)
    from ewc_fo.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def _cli(code: str, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def _interrupted(proc: subprocess.Popen, err: str) -> None:
    """Exit 130, the one line last, no traceback."""
    assert proc.returncode == 130, (proc.returncode, err[-3000:])
    assert err.strip().splitlines()[-1] == MESSAGE and "Traceback" not in err, err[-3000:]


def test_sigint_during_a_stuck_grabcut_stops_the_cli_then_resume_fails_the_sample(tmp_path):
    path = str(tmp_path / "grey.png")
    Image.fromarray(np.full((400, 500, 3), 50, np.uint8)).save(path)
    ds = fo.Dataset("interrupt-flat")
    ds.persistent = True  # the child process opens it by name
    ds.add_sample(fo.Sample(filepath=path, labels=fo.Classification(label="nematode")))
    args = [ds.name, "--label-field", "labels", "--segmenter", "grabcut", "--sample-timeout", "0",
            "--output-dir", str(tmp_path / "out")]
    proc = _cli(STUCK, "label", *args)
    try:
        line = ""
        while line != "in grabcut":  # wait until the run is inside GrabCut, for good
            line = proc.stdout.readline().strip()
            assert line or proc.poll() is None, proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)  # before the fix: never, the cuts ran on a pool
    finally:
        _reap(proc)
    _interrupted(proc, err)
    ds.reload()
    assert runs.get_run(ds, "ewc")["status"] == "running"

    summary = ewc_fo.label(ds, "labels", segmenter="grabcut", progress_bar=False,
                           output_dir=str(tmp_path / "out"))
    assert summary.errors == {"flat_image": 1} and summary.succeeded == 0
    assert "one flat colour" in ds.first()["ewc_error"]
    ds.delete()


N = 8
CFG = EWCConfig(explain_size=160, explainers=("gradcam", "layercam"))
ARGS = ["--label-field", "labels", "--segmenter", "grabcut", "--explain-size", "160",
        "--explainers", "gradcam,layercam", "--batch-size", "2"]
# (point, occurrence, samples marked finished after it): one run after the other, each
# resuming the one before; 8 samples in batches of 2, every batch written when done
STEPS = [
    ("declared", 1, 0),  # fields declared, run record "declaring"
    ("grabcut", 3, 0),  # inside the first batch's cuts
    ("marker", 1, 0),  # the first batch's fields written, its markers not yet
    ("explain", 2, 2),  # the second batch's explain pass
    ("marker", 2, 4),  # the second flush of this run, before its markers
    ("finish", 1, N),  # every sample done, the run not yet marked complete
]


def _marked(ds) -> list:
    ds.reload()
    if "ewc_confidence" not in ds.get_field_schema():
        return []
    return list(ds.exists("ewc_confidence"))


def _result(ds) -> dict:
    return {os.path.basename(s.filepath): (np.asarray(Image.open(s.ewc_mask.mask_path)), s.ewc_confidence,
                                           s.ewc_scores, np.load(s.ewc_maps_path)["maps"].tobytes())
            for s in ds}


def test_sigint_at_every_point_of_a_run_then_resume_matches_uninterrupted(tmp_path):
    ds = make_dataset(str(tmp_path / "imgs"), "interrupt-points", n=N)
    ds.persistent = True
    ref = ds.clone("interrupt-points-reference")
    out = str(tmp_path / "out")
    try:
        for point, at, want in STEPS:
            proc = _cli(AT_POINT, f"{point}:{at}", "label", ds.name, *ARGS, "--output-dir", out)
            try:
                _, err = proc.communicate(timeout=600)
            finally:
                _reap(proc)
            _interrupted(proc, err)
            marked = _marked(ds)
            assert len(marked) == want, (point, at, len(marked))
            assert runs.get_run(ds, "ewc")["status"] == (runs.DECLARING if point == "declared" else "running")
            for s in marked:  # a sample marked finished has every field and file
                assert s.ewc_mask is not None and os.path.exists(s.ewc_mask.mask_path), point
                assert s.ewc_scores and os.path.exists(s.ewc_maps_path), point
            if point == "marker":  # interrupted mid-flush: fields written, no marker
                ds.reload()
                assert len(ds.exists("ewc_mask")) == want + 2, point

        summary = ewc_fo.label(ds, "labels", segmenter=create_segmenter("grabcut"), config=CFG,
                               progress_bar=False, output_dir=out)
        assert summary.skipped_done == N and summary.succeeded == 0
        assert runs.get_run(ds, "ewc")["status"] == "complete"
        ewc_fo.label(ref, "labels", segmenter=create_segmenter("grabcut"), config=CFG, batch_size=2,
                     progress_bar=False, output_dir=str(tmp_path / "ref"))
        got, want = _result(ds), _result(ref)
        assert got.keys() == want.keys() and len(got) == N
        for k in want:
            assert np.array_equal(got[k][0], want[k][0]), k
            assert got[k][1:] == want[k][1:], k
    finally:
        for name in ("interrupt-points", "interrupt-points-reference"):
            if fo.dataset_exists(name):
                fo.delete_dataset(name)

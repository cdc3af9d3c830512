"""Two real processes labeling one dataset at once, and leases that outlive their holder.

The runs start together behind a file barrier, after their models are loaded, so their
field declarations overlap: without the schema lock FiftyOne's whole-list rewrites of the
dataset document (voxel51/fiftyone#3185) drop one run's fields.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import fiftyone as fo
import numpy as np
import pytest

import ewc_fo
from ewc_fo.cli import main
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.fo.io.importers._common import _finish
from ewc_fo.fo.review.evaluate import evaluate
from ewc_fo.fo.review.views import TRIAGE
from ewc_fo.fo.runs import claims
from ewc_fo.fo.runs import record as runs
from ewc_fo.fo.runs.claims import claim_prefix, schema_lock
from ewc_fo.runtime.errors import ClaimLostError, RunInProgressError, SchemaBusyError
from ewc_fo.segmenters import create_segmenter

from ._data import PHOTOS, make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 4
EXPLAINERS = ("gradcam", "layercam")
CFG = EWCConfig(explain_size=160, explainers=EXPLAINERS)

RUN = textwrap.dedent("""
    import os, sys, time
    import fiftyone as fo
    import ewc_fo
    from ewc_fo.models.registry import load_classifier
    from ewc_fo.runtime.errors import EWCError
    from ewc_fo.engine.pipeline import EWCConfig
    from ewc_fo.segmenters import create_segmenter
    name, prefix, out, go = sys.argv[1:5]
    ds = fo.load_dataset(name)
    clf, seg = load_classifier(), create_segmenter("grabcut")
    open(f"{go}.{os.getpid()}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.005)
    try:
        s = ewc_fo.label(ds, "labels", prefix=prefix, classifier=clf, segmenter=seg,
                         config=EWCConfig(explain_size=160, explainers=("gradcam", "layercam")),
                         batch_size=2, progress_bar=False, output_dir=out)
    except EWCError as e:
        print("REFUSED", e, flush=True)
        sys.exit(3)
    print("OK", s.succeeded, flush=True)
""")

HOLD = textwrap.dedent("""
    import sys, time
    import fiftyone as fo
    from ewc_fo.fo.runs.claims import claim_prefix
    ds = fo.load_dataset(sys.argv[1])
    claim_prefix(ds, sys.argv[2], ttl_s=float(sys.argv[3]))
    print("CLAIMED", flush=True)
    time.sleep(600)
""")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _run_together(tmp_path, name: str, prefixes: list[str]) -> list[tuple[int, str, str]]:
    go = str(tmp_path / "go")
    procs = [subprocess.Popen([sys.executable, "-c", RUN, name, p, str(tmp_path / f"out_{i}"), go],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
             for i, p in enumerate(prefixes)]
    try:
        deadline = time.time() + 240
        while sum(f.startswith("go.") for f in os.listdir(tmp_path)) < len(procs):
            assert time.time() < deadline, "workers never got ready"
            assert all(p.poll() is None for p in procs), [p.stderr.read()[-2000:] for p in procs if p.poll() is not None]
            time.sleep(0.05)
        open(go, "w").close()
        out = []
        for p in procs:
            o, e = p.communicate(timeout=600)
            out.append((p.returncode, o, e))
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def shared(tmp_path):
    name = f"concurrent-{tmp_path.name}"
    ds = make_dataset(str(tmp_path / "imgs"), name, n=N)
    ds.persistent = True  # the workers load it by name
    yield ds
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


def test_two_prefixes_at_once_keep_every_field(tmp_path, shared, capsys):
    results = _run_together(tmp_path, shared.name, ["one", "two"])
    for rc, out, err in results:
        assert rc == 0 and f"OK {N}" in out, (rc, out, err[-3000:])
    shared.reload()
    schema = shared.get_field_schema()
    for p in ("one", "two"):
        want = runs.field_names(p, list(EXPLAINERS))
        assert set(want.values()) <= set(schema), sorted(set(want.values()) - set(schema))
        assert runs.get_run(shared, p)["status"] == "complete"
        assert set(shared.mask_targets[f"{p}_mask"].values()) == {"tabby", "espresso", "missile", "tripod"}
    assert len(list(shared.iter_samples())) == N  # every stored value has a declared field
    assert all(s.one_confidence is not None and s.two_confidence is not None for s in shared)
    views = shared.list_saved_views()
    assert len(views) == len(set(views)) == 2 * len(TRIAGE)
    assert main(["summary", shared.name]) == 0
    out = capsys.readouterr().out
    assert "run 'one'" in out and "run 'two'" in out and f"labeled {N} of {N}" in out


def test_same_prefix_at_once_runs_once(tmp_path, shared):
    results = _run_together(tmp_path, shared.name, ["ewc", "ewc"])
    ok = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] == 3]
    assert len(ok) == 1 and len(refused) == 1, results
    assert f"OK {N}" in ok[0][1]
    msg = refused[0][1]
    # refused while the other ran, or it found the finished run: either way one clear line
    assert ("run 'ewc' on dataset" in msg and "is in use by" in msg and "pid" in msg) or "already labeled" in msg, msg
    shared.reload()
    views = shared.list_saved_views()
    assert Counter(views).most_common(1)[0][1] == 1 and len(views) == len(TRIAGE)
    assert len(shared.exists("ewc_confidence")) == N


def test_killed_holder_is_taken_over(tmp_path, shared):
    """A holder killed on this machine is detected at once (its pid is gone)."""
    hold = subprocess.Popen([sys.executable, "-c", HOLD, shared.name, "ewc", "600"],
                            stdout=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        assert hold.stdout.readline().strip() == "CLAIMED"
        with pytest.raises(RunInProgressError, match=f"pid {hold.pid}"):
            claim_prefix(shared, "ewc")
        os.kill(hold.pid, signal.SIGKILL)
        hold.wait()
    finally:
        if hold.poll() is None:
            hold.kill()
            hold.wait()
    s = ewc_fo.label(shared, "labels", segmenter=create_segmenter("grabcut"), config=CFG,
                     progress_bar=False, output_dir=str(tmp_path / "out"))
    assert s.succeeded == N


def test_unrenewed_lease_expires(tmp_path, shared):
    """A live holder that stops renewing (hung, or on another host) loses the lease at expiry."""
    hold = subprocess.Popen([sys.executable, "-c", HOLD, shared.name, "ewc", "3"],
                            stdout=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        assert hold.stdout.readline().strip() == "CLAIMED"
        with pytest.raises(RunInProgressError, match="is in use by .* until"):
            ewc_fo.label(shared, "labels", segmenter=create_segmenter("grabcut"), config=CFG,
                         progress_bar=False, output_dir=str(tmp_path / "out"))
        assert len(shared.list_saved_views()) == 0 and "ewc_mask" not in shared.get_field_schema()
        s = ewc_fo.label(shared, "labels", segmenter=create_segmenter("grabcut"), config=CFG,
                         progress_bar=False, output_dir=str(tmp_path / "out"), wait_s=30)
        assert s.succeeded == N
    finally:
        hold.kill()
        hold.wait()


def test_claim_renew_release_and_loss(shared):
    a = claim_prefix(shared, "p", ttl_s=0.5)
    a.renew()
    with pytest.raises(RunInProgressError):
        claim_prefix(shared, "p")
    time.sleep(0.8)
    with claim_prefix(shared, "p", ttl_s=30) as b:  # a's lease expired: b takes over
        with pytest.raises(ClaimLostError, match="taken by another process"):
            a.renew()
        assert b.held
    assert not b.held
    with claim_prefix(shared, "p", ttl_s=0.3, auto_renew=True) as c:
        time.sleep(1.0)  # three renewal periods: still ours
        c.check()
        with pytest.raises(RunInProgressError):
            claim_prefix(shared, "p")
    claim_prefix(shared, "p").release()  # free again after the context


def test_schema_lock_is_reentrant_and_exclusive(shared):
    with schema_lock(shared, ttl_s=0.5):
        with schema_lock(shared):  # nested in the same thread: no deadlock
            shared.add_sample_field("extra", fo.StringField)
        time.sleep(0.8)  # renewed in the background while held
        import threading

        err = []
        t = threading.Thread(target=lambda: err.append(_try_lock(shared)))
        t.start()
        t.join()
        assert err and "field schema" in err[0]
    assert "extra" in shared.get_field_schema()


def _try_lock(ds) -> str:
    try:
        with schema_lock(ds, wait_s=0.2):
            return ""
    except RunInProgressError as e:
        return str(e)


def _other_holder(ds) -> claims.Lease:
    """The schema lock as another process would hold it (its own owner id; our pid, so not
    taken over as a dead holder's)."""
    return claims.Lease(f"{claims._dataset_key(ds)}:{claims.SCHEMA}", ttl_s=30, what="test").acquire()


def test_evaluate_and_import_wait_for_the_schema_lock(shared, monkeypatch):
    """Evaluation and an importer's finish change the dataset document (fields, an evaluation
    run, the App's sidebar, mask targets, classes): with the lock held elsewhere they wait,
    and past the wait refuse before changing anything."""
    monkeypatch.setattr(claims, "SCHEMA_WAIT_S", 0.3)
    for f in ("ground_truth", "ewc_mask"):
        shared.add_sample_field(f, fo.EmbeddedDocumentField, embedded_doc_type=fo.Segmentation)
    m = np.zeros((8, 8), np.uint8)
    m[2:6, 2:6] = 1
    shared.set_values("ground_truth", [fo.Segmentation(mask=m)] * N)
    shared.set_values("ewc_mask", [fo.Segmentation(mask=m)] * N)
    shared.mask_targets = {"ground_truth": {1: "tabby"}, "ewc_mask": {1: "tabby"}}
    shared.save()

    other = _other_holder(shared)
    try:
        with pytest.raises(SchemaBusyError, match="field schema"):
            evaluate(shared)  # declaring ewc_iou
        with pytest.raises(SchemaBusyError, match="field schema"):
            evaluate(shared, sample_iou_field="")  # registering the evaluation run
        with pytest.raises(SchemaBusyError, match="field schema"):
            _finish(shared, "labels", "src", "folder", ("gt2", {1: "tabby"}))
        shared.reload()
        assert "ewc_iou" not in shared.get_field_schema() and not shared.list_evaluations()
        assert not [f for f in shared.get_field_schema() if f.startswith("ewc_eval")]
        assert "gt2" not in shared.mask_targets and "labels" not in shared.classes
    finally:
        other.release()

    report = evaluate(shared)
    assert report.miou == pytest.approx(1.0)
    assert "ewc_eval" in shared.list_evaluations() and "ewc_iou" in shared.get_field_schema()
    _finish(shared, "labels", "src", "folder", ("gt2", {1: "tabby"}))
    assert shared.mask_targets["gt2"] == {1: "tabby"} and shared.classes["labels"] == sorted(PHOTOS.values())

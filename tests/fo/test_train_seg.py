"""Training a segmentation model on a run's trusted masks, and labeling with it (issue 21)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

import ewc_fo
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.fo.review.views import REJECT_TAG, REVIEWED_TAG
from ewc_fo.fo.train_seg import read_training_set
from ewc_fo.models.seg_checkpoint import read_seg_metadata
from ewc_fo.models.seg_train import SegTrainConfig
from ewc_fo.runtime.errors import ConfigError

from ._data import make_dataset

N = 8
TINY = SegTrainConfig(input_size=96, width=16, epochs=3, tune_epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished EWC run (GrabCut) on 8 small photos, 2 per class, and a model trained on it."""
    root = tmp_path_factory.mktemp("seg")
    ds = make_dataset(str(root / "imgs"), "train-seg", n=N)
    ds.persistent = True
    ewc_fo.label(ds, "labels", segmenter="grabcut", config=EWCConfig(explain_size=160), batch_size=4,
                 progress_bar=False, output_dir=str(root / "ewc"))
    model = root / "seg.safetensors"
    ewc_fo.train_segmenter(ds, run="ewc", out=model, config=TINY, min_samples_per_class=2, threads=1,
                           verbose=False)
    yield ds, model, root
    for name in fo.list_datasets():
        if name.startswith("train-seg"):
            fo.delete_dataset(name)


def _run_fields(ds, prefix="ewc"):
    names = sorted(f for f in ds.get_field_schema() if f.startswith(prefix + "_"))
    return names, {f: ds.values(f"{f}.mask_path" if f == f"{prefix}_mask" else f) for f in names
                   if not f.startswith(f"{prefix}_heatmap") and f != f"{prefix}_instances"}


def test_checkpoint_names_run_and_samples(run):
    ds, model, _ = run
    meta = read_seg_metadata(model)
    assert sorted(meta["class_names"]) == ["espresso", "missile", "tabby", "tripod"]
    assert meta["run"]["prefix"] == "ewc" and meta["run"]["dataset"] == ds.name
    assert sorted(meta["sample_ids"]) == sorted(ds.values("id"))
    assert meta["input_size"] == 96 and meta["samples"]["by_confidence"] == N


def test_training_never_writes_to_the_run(run, tmp_path):
    ds, _, _ = run
    before = _run_fields(ds)
    ewc_fo.train_segmenter(ds, run="ewc", out=tmp_path / "again.safetensors",
                           config=SegTrainConfig(**{**TINY.__dict__, "epochs": 1, "tune_epochs": 0}),
                           min_samples_per_class=2, threads=1, verbose=False)
    ds.reload()
    assert _run_fields(ds) == before


def test_weights_follow_the_reviewers(run):
    ds, _, _ = run
    ids = ds.values("id")
    conf = dict(zip(ids, ds.values("ewc_confidence")))
    rejected, accepted = ds.select(ids[0]).first(), ds.select(ids[1]).first()
    rejected.tags.append(REJECT_TAG)
    rejected.save()
    accepted.tags.append(REVIEWED_TAG)
    accepted.save()
    try:
        ts = read_training_set(ds, "ewc", min_samples_per_class=1)
        assert ids[0] not in ts.ids
        w = dict(zip(ts.ids, ts.weights))
        assert np.all(w[ids[1]] == 1.0)
        other = ids[2]
        assert w[other][0] == pytest.approx(conf[other])  # background weighs by the image's confidence
        assert ts.counts["rejected"] == 1 and ts.counts["accepted"] == 1
        # every mask a run wrote maps to model labels within the model's classes
        m = ts.mask(ts.ids.index(other))
        assert m.max() <= len(ts.class_names)
        # --min-confidence above every class's confidence leaves only the accepted sample
        ts = read_training_set(ds, "ewc", min_confidence=1.0, min_samples_per_class=0)
        assert ts.ids == [ids[1]] and ts.counts["below_min_confidence"] == N - 2
    finally:
        for s in (rejected, accepted):
            s.tags = []
            s.save()


def test_bad_input_is_one_line_before_work(run, tmp_path):
    ds, _, _ = run
    with pytest.raises(ConfigError, match="no ewc-fo run 'nope'"):
        ewc_fo.train_segmenter(ds, run="nope")
    with pytest.raises(ConfigError, match=r"too few trusted samples .*espresso \(2\)"):
        ewc_fo.train_segmenter(ds, run="ewc")  # 2 images per class, 3 needed by default
    part = make_dataset(str(tmp_path / "imgs"), "train-seg-part", n=4)
    ewc_fo.label(part, "labels", segmenter="grabcut", config=EWCConfig(explain_size=160), batch_size=2,
                 max_samples=2, progress_bar=False, output_dir=str(tmp_path / "part"))
    with pytest.raises(ConfigError, match="unfinished"):
        ewc_fo.train_segmenter(part, run="ewc")


def _result(ds, prefix):
    out = {}
    for s in ds.select_fields([f"{prefix}_mask", f"{prefix}_confidence", f"{prefix}_class_confidence",
                               f"{prefix}_agreement"]):
        out[os.path.basename(s.filepath)] = (np.asarray(Image.open(s[f"{prefix}_mask"].mask_path)),
                                             s[f"{prefix}_confidence"], s[f"{prefix}_class_confidence"],
                                             s[f"{prefix}_agreement"])
    return out


def test_label_with_the_model_writes_a_run(run, tmp_path):
    ds, model, _ = run
    s = ewc_fo.label(ds, "labels", prefix="seg", segmentation_model=model, progress_bar=False,
                     output_dir=str(tmp_path / "seg"))
    assert s.succeeded == N and s.segmenter.startswith("segnet:")
    rec = ds.get_run_info("seg").config.serialize()
    assert rec["status"] == "complete" and rec["segmenter"]["name"] == "segnet"
    assert "seg-low-confidence" in ds.list_saved_views()
    names = set(ds.mask_targets["seg_mask"].values())
    for sample in ds:
        m = np.asarray(Image.open(sample.seg_mask.mask_path))
        assert m.shape == (sample.metadata.height, sample.metadata.width) if sample.metadata else m.ndim == 2
        assert 0 <= sample.seg_confidence <= 1
        assert set(sample.seg_class_confidence) == {sample.labels.classifications[0].label} <= names
    # a finished run is not relabeled, and a model for other classes is refused
    with pytest.raises(ConfigError, match="already labeled"):
        ewc_fo.label(ds, "labels", prefix="seg", segmentation_model=model, progress_bar=False)


RUN = textwrap.dedent("""
    import sys, time, ewc_fo, fiftyone as fo
    ds = fo.load_dataset(sys.argv[1])
    ewc_fo.label(ds, "labels", prefix="segk", segmentation_model=sys.argv[3], batch_size=2, write_every=1,
                 progress_bar=False, output_dir=sys.argv[2], progress=lambda d, t: time.sleep(1.0))
""")


def test_model_run_resumes_after_sigkill_bit_identically(run, tmp_path):
    ds, model, _ = run
    killed, ref = ds.clone("train-seg-killed"), ds.clone("train-seg-ref")
    killed.persistent = True
    proc = subprocess.Popen([sys.executable, "-c", RUN, killed.name, str(tmp_path / "out"), str(model)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, done = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None:
        killed.reload()
        if "segk_confidence" in killed.get_field_schema():
            done = len(killed.exists("segk_confidence"))
        if done >= 3:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed.reload()
    marked = len(killed.exists("segk_confidence"))
    assert 3 <= marked < N, marked
    s = ewc_fo.label(killed, "labels", prefix="segk", segmentation_model=model, progress_bar=False,
                     output_dir=str(tmp_path / "out"))
    assert s.skipped_done == marked and s.succeeded == N - marked
    ewc_fo.label(ref, "labels", prefix="segk", segmentation_model=model, batch_size=2, progress_bar=False,
                 output_dir=str(tmp_path / "ref"))
    got, want = _result(killed, "segk"), _result(ref, "segk")
    assert got.keys() == want.keys() and len(got) == N
    for k in want:
        assert np.array_equal(got[k][0], want[k][0]), k
        assert got[k][1:] == want[k][1:], k


def test_cli_trains_and_names_bad_input(run, tmp_path, capsys):
    from ewc_fo.cli import main

    ds, model, _ = run
    out = tmp_path / "cli.safetensors"
    assert main(["train-seg", ds.name, "--run", "nope", "--out", str(out)]) == 2
    assert "no ewc-fo run 'nope'" in capsys.readouterr().err
    assert main(["train-seg", ds.name, "--run", "ewc", "--out", str(out), "--input-size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert main(["train-seg", ds.name, "--run", "ewc", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "too few trusted samples" in err and "\n" not in err and not out.exists()
    assert main(["train-seg", ds.name, "--run", "ewc", "--out", str(out), "--input-size", "96", "--epochs", "1",
                 "--tune-epochs", "0", "--min-samples", "2", "--threads", "1"]) == 0
    assert "trained on 8 images of run 'ewc'" in capsys.readouterr().out
    assert read_seg_metadata(out)["trainable_prefixes"] == ["decoder"]
    # a model for other classes: one line, nothing declared
    meta = read_seg_metadata(out)
    other = tmp_path / "other.safetensors"
    from ewc_fo.models.seg_checkpoint import load_seg_model, save_seg_model

    m, _ = load_seg_model(out)
    import torch

    m.decoder.cls = torch.nn.Conv2d(m.decoder.cls.in_channels, 3, 1)
    save_seg_model(m, {**meta, "class_names": ["cat", "dog"]}, other)
    assert main(["label", ds.name, "--label-field", "labels", "--prefix", "other",
                 "--segmentation-model", str(other)]) == 2
    assert "none of the dataset's classes" in capsys.readouterr().err
    assert "other_confidence" not in ds.get_field_schema()
    assert main(["label", ds.name, "--label-field", "labels", "--segmentation-model",
                 str(tmp_path / "absent.safetensors")]) == 2
    assert "segmentation model not found" in capsys.readouterr().err

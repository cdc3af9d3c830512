"""The train-seg operator (issue 21): its form checks, one SDK call, progress, one-line errors."""

from __future__ import annotations

import os
import sys

import fiftyone as fo
import fiftyone.operators as foo
import pytest

import ewc_fo
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.models.seg_checkpoint import read_seg_metadata
from ewc_fo.runtime.errors import ConfigError

from ..fo._data import make_dataset
from .conftest import URI
from .test_operators import invalid, props, resolve

OP = f"{URI}/train_segmenter"
TINY = dict(input_size=64, epochs=1, min_samples=2)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A finished EWC run (GrabCut) on 8 small photos, 2 per class."""
    root = tmp_path_factory.mktemp("trainseg_op")
    ds = make_dataset(str(root / "imgs"), "plugin-train-seg", n=8)
    ewc_fo.label(ds, "labels", segmenter="grabcut", config=EWCConfig(explain_size=160), batch_size=4,
                 progress_bar=False, output_dir=str(root / "ewc"))
    yield ds, root
    ds.delete()


def test_listed_and_delegated_by_default():
    cfg = foo.get_operator(OP).config
    assert cfg.allow_immediate_execution and cfg.allow_delegated_execution and cfg.default_choice_to_delegated


def test_form_checks_as_it_is_filled(ran):
    ds, root = ran
    form = resolve("train_segmenter", ds, {"min_samples": 2})
    p = props(form)
    assert p["run"].type.values == ["ewc"] and p["run"].default == "ewc"
    assert p["out"].default.endswith("seg_ewc.safetensors")
    assert p["input_size"].default == 320 and p["epochs"].default == 20
    assert not invalid(form)
    # the run's trust, checked as the CLI checks it: two images a class, three asked for
    few = invalid(resolve("train_segmenter", ds, {}))
    assert list(few) == ["run"] and "too few trusted samples" in few["run"] and "tabby (2)" in few["run"]
    bad = invalid(resolve("train_segmenter", ds, {"min_samples": 2, "input_size": 100, "epochs": 0,
                                                   "min_confidence": 1.5, "device": "gpu"}))
    assert sorted(bad) == ["device", "epochs", "input_size", "min_confidence"]
    assert "multiple of 32" in bad["input_size"]
    existing = root / "taken.safetensors"
    existing.write_bytes(b"x")
    taken = invalid(resolve("train_segmenter", ds, {"min_samples": 2, "out": str(existing)}))
    assert "exists" in taken["out"]
    assert not invalid(resolve("train_segmenter", ds, {"min_samples": 2, "out": str(existing), "overwrite": True}))
    assert "end with .safetensors" in invalid(resolve("train_segmenter", ds, {"min_samples": 2,
                                                                              "out": str(root / "m.pt")}))["out"]


def test_form_without_runs(tmp_path):
    bare = make_dataset(str(tmp_path / "imgs"), "plugin-train-seg-bare", n=2)
    try:
        p = props(resolve("train_segmenter", bare))
        assert "run_missing" in p and "run" not in p
    finally:
        bare.delete()


def test_trains_with_progress_and_writes_nothing_to_the_dataset(ran, tmp_path, monkeypatch):
    ds, _ = ran
    mod = sys.modules[type(foo.get_operator(OP)).__module__]
    seen = []

    class Recorder:
        def __init__(self, ctx, what):
            self.what = what

        def __call__(self, done, total):
            seen.append((self.what, done, total))

    monkeypatch.setattr(mod, "Progress", Recorder)
    before = {f: ds.values(f) for f in ds.get_field_schema() if f.startswith("ewc_") and f != "ewc_instances"}
    out = str(tmp_path / "seg.safetensors")
    res = foo.get_operator(OP)(ds, "ewc", out, **TINY)
    assert os.path.exists(out) and res["out"] == out and res["n_samples"] == 8
    meta = read_seg_metadata(out)
    assert sorted(meta["class_names"]) == ["espresso", "missile", "tabby", "tripod"]
    assert meta["input_size"] == 64 and meta["train"]["epochs"] == 1 and meta["run"]["prefix"] == "ewc"
    # image passes: 8 encoded, then 8 per epoch; the last call reports all of it
    assert seen and seen[-1] == ("training", 16, 16) and all(t == 16 for _, _, t in seen)
    ds.reload()
    assert {f: ds.values(f) for f in before} == before
    # the same file again is refused unless asked
    with pytest.raises(Exception, match="exists"):
        foo.get_operator(OP)(ds, "ewc", out, **TINY)
    foo.get_operator(OP)(ds, "ewc", out, overwrite=True, **TINY)


def test_bad_input_is_one_line_before_work(ran, tmp_path):
    ds, _ = ran
    out = str(tmp_path / "never.safetensors")
    # refused by the form (the App shows it on the field), before any image is read
    with pytest.raises(Exception, match=r"^Validation error. Path: run. Reason: too few trusted samples "
                                        r"\(fewer than 3\) for classes espresso \(2\)") as info:
        foo.get_operator(OP)(ds, "ewc", out, input_size=64, epochs=1)  # min_samples 3, 2 a class
    assert "\n" not in str(info.value)
    with pytest.raises(Exception, match="^Validation error. Path: input_size. Reason: must be a multiple of 32$"):
        foo.get_operator(OP)(ds, "ewc", out, **{**TINY, "input_size": 100})
    # what only execute can find out comes back as the ewc-fo exception, one line
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="^--device cuda: ") as info:
            foo.get_operator(OP)(ds, "ewc", out, device="cuda", **TINY)
        assert "\n" not in str(info.value)
    assert not os.path.exists(out)
    assert fo.dataset_exists(ds.name)


def test_big_targets_count_trust_in_execute_not_in_the_form(ran, tmp_path, monkeypatch):
    """Counting trusted images reads every sample: past FORM_TRUST_MAX the form checks the run
    alone, and execute refuses the same input, one line, before any image is read."""
    ds, _ = ran
    mod = sys.modules[type(foo.get_operator(OP)).__module__]
    monkeypatch.setattr(mod, "FORM_TRUST_MAX", 4)
    assert not invalid(resolve("train_segmenter", ds, {}))  # 8 samples: not counted in the form
    out = str(tmp_path / "never.safetensors")
    with pytest.raises(ConfigError, match="^too few trusted samples"):
        foo.get_operator(OP)(ds, "ewc", out, input_size=64, epochs=1)
    assert not os.path.exists(out)

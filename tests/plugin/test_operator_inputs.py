"""Issue 23: every operator of the plugin, given bad or hostile input, answers with one line (a
form error or the result's error), never a traceback, and writes nowhere but under the export
root (or ewc-fo's own folder of the FiftyOne dataset directory).

Each case goes through ``foo.execute_operator`` with the form's defaults filled in, as the App
submits a form; the outcome is "form" (refused by ``resolve_input``: "Validation error. Path: ...
Reason: ..."), "error" (a one-line ``{"error": ...}`` result) or "ok".
"""

from __future__ import annotations

from pathlib import Path

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
from PIL import Image

from ..fo._data import make_dataset
from .conftest import FAST, URI

HUGE = 10**30


def outcome(name: str, samples, params: dict, defaults: bool = True, **ctx) -> tuple[str, str]:
    """(kind, one-line message) of running operator ``name``; a traceback or a multi-line message
    fails the test here."""
    uri = f"{URI}/{name}"
    view = samples.view() if isinstance(samples, fo.Dataset) else samples
    if defaults:
        params = _with_defaults(uri, view, {"view_target": "CURRENT_VIEW", **params})
    try:
        res = foo.execute_operator(uri, ctx=dict(view=view, params=params, **ctx))
    except Exception as e:  # noqa: BLE001 - what the App would show is the point
        msg = str(e)
        assert "Traceback" not in msg and "\n" not in msg.strip(), f"{name} {params}: {msg[-1500:]}"
        assert msg.startswith("Validation error"), f"{name} {params}: {msg}"
        return "form", msg
    out = res.result if isinstance(res.result, dict) else {}
    if out.get("error"):
        assert "\n" not in out["error"] and "Traceback" not in out["error"], out["error"]
        return "error", out["error"]
    return "ok", ""


def _with_defaults(uri: str, view, params: dict) -> dict:
    """The form's defaults filled in, as the App does before it submits (plugin _common)."""
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params=dict(dataset_name=view._root_dataset.name, view=view._serialize(),
                                               params=dict(params)), operator_uri=uri)
    prop = foo.get_operator(uri).resolve_input(ctx)
    out = dict(params)
    for key, p in getattr(getattr(prop, "type", None), "properties", {}).items():
        if key not in out and getattr(p, "default", None) is not None:
            out[key] = p.default
    return out


def refused(name, samples, params, **ctx) -> str:
    kind, msg = outcome(name, samples, params, **ctx)
    assert kind in ("form", "error"), f"{name} accepted {params}"
    return msg


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """Two photos with labels, a string field, a hand-made run 'ewc' (masks on disk) and a
    ground-truth segmentation field."""
    from ewc_fo.fo.runs import record as runs

    root = tmp_path_factory.mktemp("inputs")
    d = make_dataset(str(root / "imgs"), "plugin-inputs", n=2)
    d.add_sample_field("note", fo.StringField)
    (root / "masks").mkdir()
    for i, s in enumerate(d.iter_samples(autosave=True)):
        w, h = Image.open(s.filepath).size
        m = np.zeros((h, w), np.uint8)
        m[h // 4 : h // 2, w // 4 : w // 2] = 1
        Image.fromarray(m).save(root / "masks" / f"{i}.png")
        s["ewc_mask"] = fo.Segmentation(mask_path=str(root / "masks" / f"{i}.png"))
        s["ground_truth"] = fo.Segmentation(mask_path=str(root / "masks" / f"{i}.png"))
        s["ewc_confidence"] = 0.2 + 0.5 * i
        s["note"] = "x"
    d.mask_targets = {"ewc_mask": {1: "tabby"}, "ground_truth": {1: "tabby"}}
    d.save()
    runs.save_run(d, "ewc", {"output_dir": str(root / "masks"), "status": "complete", "fields": {}})
    yield d
    d.delete()


@pytest.fixture
def export_root(tmp_path, monkeypatch):
    """The root at tmp/a/b/exports; the server's working folder and home under tmp as well, so
    that a path that escapes (were the confinement broken) still lands in the test's folder."""
    root = tmp_path / "a" / "b" / "exports"
    root.mkdir(parents=True)
    (tmp_path / "a" / "b" / "cwd").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    monkeypatch.setenv("EWC_FO_EXPORT_ROOT", str(root))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "a" / "b" / "cwd")
    return root


#: paths out of the export root: climbing, absolute, the home folder, climbing after a folder,
#: the root itself, and a symlink inside the root that points out of it
HOSTILE = ["../../etc", "{tmp}/outside", "~/probe", "x/../../../../probe", "{root}", "link/probe", "{root}/../../x"]


def _hostile(template: str, export_root: Path) -> str:
    return template.format(tmp=export_root.parents[2], root=export_root)


def _nothing_escaped(export_root: Path) -> None:
    tmp = export_root.parents[2]
    escaped = [p for p in tmp.rglob("*") if p.is_file() and export_root not in p.parents]
    assert escaped == [], escaped


# ----------------------------------------------------------------------------- compute_ewc

COMPUTE_BAD = [
    {"label_field": "no_such_field"},
    {"label_field": "note"},  # a string field, not labels
    {"label_field": 5},
    {"prefix": ""},
    {"prefix": "a" * 500},
    {"prefix": "../x"},
    {"prefix": 7},
    {"explainers": "gradcam"},  # a string, not a list
    {"explainers": [5]},
    {"explainers": ["gradcam", "gradcam"]},
    {"explainers": ["nope"]},
    {"segmenter": "nope"},
    {"segmenter": 3},
    {"sam2_checkpoint": "../../etc/passwd.pt", "segmenter": "sam2"},
    {"classifier": "../../etc/passwd"},
    {"classifier": 12},
    {"explain_size": HUGE},
    {"explain_size": -1},
    {"explain_size": "big"},
    {"batch_size": HUGE},
    {"batch_size": -3},
    {"batch_size": True},
    {"class_competition": -0.5},
    {"mask_weight": HUGE},
    {"objectness": "nan"},
    {"objectness_labels": -1},
    {"ray_address": "not a host", "workers": HUGE},
    {"ray_address": "auto", "workers": -1},
    {"ray_address": "auto", "gpus_per_worker": -2},
]


@pytest.fixture
def no_probe_run(ds):
    """Whatever a case did, the next one starts without a run 'probe'; a case that made one fails."""
    yield
    made = "probe" in ds.list_runs()
    if made:
        from ewc_fo.fo.runs.record import delete_run

        delete_run(ds, "probe")
    assert not made, "a refused input still declared run 'probe'"


@pytest.mark.parametrize("bad", COMPUTE_BAD, ids=[str(c)[:60] for c in COMPUTE_BAD])
def test_compute_refuses_bad_input_in_one_line(ds, bad, no_probe_run):
    refused("compute_ewc", ds, {"label_field": "labels", "prefix": "probe", **FAST, **bad})


@pytest.mark.parametrize("path", HOSTILE)
def test_compute_output_dir_is_confined(ds, export_root, path, no_probe_run):
    msg = refused("compute_ewc", ds, {"label_field": "labels", "prefix": "probe", **FAST,
                                      "output_dir": _hostile(path, export_root)})
    assert "outside" in msg
    _nothing_escaped(export_root)


# ----------------------------------------------------------------------------- fit_classifier

FIT_BAD = [
    {"label_field": "no_such_field"},
    {"label_field": "note"},
    {"out": ""},
    {"out": 5},
    {"out": "model.pt"},
    {"fit_size": HUGE},
    {"fit_size": -5},
    {"fit_size": "x"},
    {"backbone": "no_such_backbone"},
    {"backbone": 5},
]


@pytest.mark.parametrize("bad", FIT_BAD, ids=[str(c)[:60] for c in FIT_BAD])
def test_fit_refuses_bad_input_in_one_line(ds, export_root, bad):
    refused("fit_classifier", ds, {"label_field": "labels", "out": "m.safetensors", **bad})


@pytest.mark.parametrize("path", [p + "/m.safetensors" for p in HOSTILE if p != "{root}"])
def test_fit_out_is_confined(ds, export_root, path):
    msg = refused("fit_classifier", ds, {"label_field": "labels", "out": _hostile(path, export_root)})
    assert "outside" in msg
    _nothing_escaped(export_root)


# ----------------------------------------------------------------------------- export_masks

EXPORT_BAD = [
    {"prefix": "no_such_run"},
    {"prefix": ""},
    {"format": "pdf"},
    {"format": "voc", "split": "../../etc"},
    {"format": "voc", "split": 5},
    {"format": "voc", "uncertain_band": -1},
    {"format": "voc", "uncertain_band": HUGE},
    {"format": "voc", "min_confidence": -0.5},
    {"format": "voc", "min_confidence": 2},
    {"format": "voc", "min_confidence": "high"},
    {"classes": "../../etc/passwd"},
    {"classes": "/etc/passwd"},
    {"classes": 5},
    {"out_dir": 5},
    {"out_dir": ""},
]


@pytest.mark.parametrize("bad", EXPORT_BAD, ids=[str(c)[:60] for c in EXPORT_BAD])
def test_export_refuses_bad_input_in_one_line(ds, export_root, bad):
    refused("export_masks", ds, {"prefix": "ewc", "out_dir": "probe", **bad})
    assert not (export_root / "probe").exists() or bad.get("out_dir") == ""


@pytest.mark.parametrize("path", HOSTILE)
def test_export_out_dir_is_confined(ds, export_root, path):
    msg = refused("export_masks", ds, {"prefix": "ewc", "out_dir": _hostile(path, export_root)})
    assert "outside the export root" in msg
    _nothing_escaped(export_root)


def test_an_empty_split_is_the_default_one(ds, export_root):
    assert outcome("export_masks", ds, {"prefix": "ewc", "format": "voc", "out_dir": "s", "split": ""})[0] == "ok"
    assert (export_root / "s" / "ImageSets" / "Segmentation" / "train.txt").is_file()


def test_export_through_a_symlink_inside_the_root_is_refused(ds, export_root, tmp_path):
    """A folder inside the root that an earlier export wrote, with its data/ turned into a link
    out of the root: refused in the form, nothing written through the link."""
    kind, _ = outcome("export_masks", ds, {"prefix": "ewc", "out_dir": "linked"})
    assert kind == "ok"
    elsewhere = tmp_path / "elsewhere"
    (export_root / "linked" / "data").rename(elsewhere)
    (export_root / "linked" / "data").symlink_to(elsewhere, target_is_directory=True)
    before = sorted(p.name for p in elsewhere.iterdir())
    msg = refused("export_masks", ds, {"prefix": "ewc", "out_dir": "linked", "overwrite": True})
    assert "is a symlink" in msg
    assert sorted(p.name for p in elsewhere.iterdir()) == before


# ----------------------------------------------------------------------------- triage, evaluate

@pytest.mark.parametrize("bad", [{"prefix": "no_such_run"}, {"prefix": "../x"}, {"prefix": 5}, {"prefix": ""}])
def test_triage_refuses_bad_input_in_one_line(ds, bad):
    refused("create_triage_views", ds, bad)


EVAL_BAD = [
    {"pred_field": "no_such_field"},
    {"gt_field": "no_such_field"},
    {"gt_field": "note"},
    {"pred_field": "ewc_mask", "gt_field": "ewc_mask"},
    {"pred_field": 5},
]


@pytest.mark.parametrize("bad", EVAL_BAD, ids=[str(c)[:60] for c in EVAL_BAD])
def test_evaluate_refuses_bad_input_in_one_line(ds, bad):
    refused("evaluate_masks", ds, bad)


# ----------------------------------------------------------------------------- annotation, review

SEND_BAD = [
    {"prefix": "no_such_run"},
    {"max_confidence": -1},
    {"max_confidence": "low"},
    {"max_confidence": HUGE},
    {"anno_key": ""},
    {"anno_key": "../x y"},
    {"url": "not a url"},
    {"url": "http://127.0.0.1:9"},  # nothing listens there
]


@pytest.mark.parametrize("bad", SEND_BAD, ids=[str(c)[:60] for c in SEND_BAD])
def test_send_for_correction_refuses_bad_input_in_one_line(ds, bad):
    refused("send_for_correction", ds, bad)


@pytest.mark.parametrize("bad", [{"anno_key": "no_such_key"}, {"prefix": "no_such_run"}, {"anno_key": 5}])
def test_load_corrections_refuses_bad_input_in_one_line(ds, bad):
    refused("load_corrections", ds, bad)


@pytest.mark.parametrize("verdict", ["review_accept", "review_reject"])
def test_review_verdicts_refuse_bad_input_in_one_line(ds, verdict):
    sid = ds.first().id
    for params, ctx in (({"prefix": "no_such_run"}, {"current_sample": sid}),
                        ({}, {"current_sample": "0" * 24}),
                        ({}, {"current_sample": "not-an-id"}),
                        ({"prefix": 5}, {"current_sample": sid})):
        kind, _ = outcome(verdict, ds, params, **ctx)
        assert kind in ("form", "error"), (verdict, params, ctx)
    assert set(ds[sid].tags) == set()

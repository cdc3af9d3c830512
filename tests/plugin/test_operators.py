"""The FiftyOne plugin on a real database: discovery, forms, immediate execution, the panel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
from fiftyone.operators.executor import ExecutionContext
from PIL import Image

from ewc_fo.runtime.errors import ConfigError

from ..fo._data import make_dataset
from .conftest import FAST, URI

OPERATORS = ["fit_classifier", "compute_ewc", "create_triage_views", "evaluate_masks", "export_masks",
             "train_segmenter"]


def resolve(name, samples, params=None, **request):
    """The operator's form as the App would get it (system view target included)."""
    uri = f"{URI}/{name}"
    view = samples.view() if isinstance(samples, fo.Dataset) else samples
    ctx = ExecutionContext(request_params=dict(dataset_name=view._root_dataset.name, view=view._serialize(),
                                               params=params or {}, **request), operator_uri=uri)
    return foo.get_operator(uri).resolve_type(ctx, "inputs")


def props(form):
    return form.type.properties


def invalid(form):
    return {k: p.error_message for k, p in props(form).items() if getattr(p, "invalid", False)}


def run(name, samples, params, **ctx):
    view = samples.view() if isinstance(samples, fo.Dataset) else samples
    return foo.execute_operator(f"{URI}/{name}", ctx=dict(view=view, params=params, **ctx))


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    d = make_dataset(str(tmp_path_factory.mktemp("plugin_imgs")), "plugin-ops", n=3)
    d.add_sample_field("note", fo.StringField)
    d.add_sample_field("boxes", fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    d.add_sample_field("single", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    return d


@pytest.fixture(scope="module")
def labeled(ds, tmp_path_factory):
    """One immediate compute run through the operator's Python ``__call__``."""
    # (the default output folder: a typed one must lie under the export root or ewc-fo's folder)
    result = foo.get_operator(f"{URI}/compute_ewc")(ds, "labels", **FAST)
    return ds, result


def test_discovery_in_subprocess(plugin_env):
    code = (
        "import json, fiftyone.plugins as fop, fiftyone.operators as foo\n"
        "from fiftyone.plugins.context import build_plugin_contexts\n"
        "errs = [e for c in build_plugin_contexts() for e in c.errors]\n"
        "print(json.dumps({'plugins': [p.name for p in fop.list_plugins()],\n"
        "  'secrets': [p.secrets for p in fop.list_plugins() if p.name == '@ewc-fo/ewc'],\n"
        "  'operators': [o.uri for o in foo.list_operators()], 'errors': errs}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=plugin_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert URI in got["plugins"]
    assert not got["errors"], got["errors"]
    for name in OPERATORS + ["ewc_review"]:
        assert f"{URI}/{name}" in got["operators"]
    assert got["secrets"] == [["HF_TOKEN", "FIFTYONE_LABELSTUDIO_URL", "FIFTYONE_LABELSTUDIO_API_KEY",
                                "EWC_FO_EXPORT_ROOT"]]
    for name in ("review_accept", "review_reject", "send_for_correction", "load_corrections"):
        assert f"{URI}/{name}" in got["operators"]


def test_operator_configs():
    for name in OPERATORS:
        cfg = foo.get_operator(f"{URI}/{name}").config
        assert cfg.allow_immediate_execution and cfg.allow_delegated_execution, name
    assert foo.get_operator(f"{URI}/compute_ewc").config.default_choice_to_delegated


def test_compute_form(ds, monkeypatch):
    form = resolve("compute_ewc", ds)
    p = props(form)
    assert list(p)[0] == "view_target"
    assert p["label_field"].type.values == ["labels", "single"]  # not the string nor the boxes field
    assert p["label_field"].default == "labels"
    assert p["prefix"].default == "ewc"
    from ewc_fo.engine.explainers import list_explainers
    from ewc_fo.engine.pipeline import DEFAULT_EXPLAINERS

    assert p["explainers"].default == list(DEFAULT_EXPLAINERS)
    assert [c.value for c in p["explainers"].view.choices] == list_explainers()
    assert p["segmenter"].type.values == ["auto", "grabcut", "sam2", "sam-onnx"]
    assert not invalid(form)
    # validation the App shows inline
    assert "prefix" in invalid(resolve("compute_ewc", ds, {"prefix": "1bad-prefix"}))
    assert "explainers" in invalid(resolve("compute_ewc", ds, {"explainers": ["gradcam", "nope"]}))
    env = os.environ.pop("EWC_SAM2_CHECKPOINT", None)
    try:
        assert "sam2_checkpoint" in invalid(resolve("compute_ewc", ds, {"segmenter": "sam2"}))
    finally:
        if env is not None:
            os.environ["EWC_SAM2_CHECKPOINT"] = env
    assert "batch_size" in invalid(resolve("compute_ewc", ds, {"batch_size": 0}))
    assert p["class_competition"].default == 0.7 and p["mask_weight"].default == 0.5
    assert "mask_weight" in invalid(resolve("compute_ewc", ds, {"mask_weight": 1.5}))
    assert "class_competition" in invalid(resolve("compute_ewc", ds, {"class_competition": -1}))
    assert p["objectness"].default == 0.0 and "objectness" in invalid(resolve("compute_ewc", ds, {"objectness": 2}))
    # labels from objectness: the engine's rule ([0, 1)), and the model must be on the server (or fetched)
    assert p["objectness_labels"].default == 0.0
    assert "[0, 1)" in invalid(resolve("compute_ewc", ds, {"objectness_labels": 1}))["objectness_labels"]
    assert "objectness_labels" not in invalid(resolve("compute_ewc", ds, {"objectness_labels": 0.3}))
    import ewc_fo.models.objectness as obj

    monkeypatch.setattr(obj, "default_model_path", lambda: None)  # not installed, and the download fails
    for knob in ("objectness", "objectness_labels"):
        assert "U²-Net-p" in invalid(resolve("compute_ewc", ds, {knob: 0.3})).get(knob, "")


def test_compute_form_classifier_checked_and_defaults_to_the_fitted_one(ds, tmp_path):
    """Issue 22 item 5: a checkpoint path that does not exist is flagged; the default is the
    dataset's most recent fitted classifier."""
    import warnings

    from ewc_fo.fo.fit import fit

    assert props(resolve("compute_ewc", ds))["classifier"].default == "efficientnet_lite0"
    bad = invalid(resolve("compute_ewc", ds, {"classifier": str(tmp_path / "nope.safetensors")}))
    assert "not found" in bad["classifier"]
    assert "classifier" in invalid(resolve("compute_ewc", ds, {"classifier": "no_such_model"}))
    ckpt = tmp_path / "fitted.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one image per class: rare-class warning
        fit(ds, "labels", out=ckpt, fit_size=64, epochs=20, flip=False, cache_dir=tmp_path / "cache")
    try:
        form = resolve("compute_ewc", ds)
        assert props(form)["classifier"].default == str(ckpt) and "classifier" not in invalid(form)
        assert "fitted on this dataset" in props(form)["classifier"].view.description
    finally:
        ds.info = {}
        ds.save()


def test_execution_options_follow_target_size(ds):
    op = foo.get_operator(f"{URI}/compute_ewc")
    ctx = ExecutionContext(request_params=dict(dataset_name=ds.name, view=ds.view()._serialize(), params={}))
    opts = op.resolve_execution_options(ctx)
    assert opts.allow_immediate_execution and opts.allow_delegated_execution
    assert not opts.default_choice_to_delegated  # 3 samples: immediate by default


def test_forms_without_runs(tmp_path):
    bare = make_dataset(str(tmp_path), "plugin-bare", n=1)
    for name in ("create_triage_views", "export_masks"):
        p = props(resolve(name, bare))
        assert "prefix_missing" in p, name
    assert "fields_missing" in props(resolve("evaluate_masks", bare))
    fit = resolve("fit_classifier", bare)
    assert props(fit)["out"].default.endswith("classifier_labels.safetensors")
    assert "out" in invalid(resolve("fit_classifier", bare, {"out": "/tmp/model.pt"}))


def test_compute_selected_samples(ds, tmp_path):
    sid = ds.first().id
    res = run("compute_ewc", ds, dict(label_field="labels", prefix="sel", view_target="SELECTED_SAMPLES",
                                      class_competition=0.0,
                                      objectness_labels=0.3, **FAST),
              selected=[sid])
    from ewc_fo.fo.runs.record import get_run

    cfg = get_run(ds, "sel")["method"]["config"]
    assert cfg["class_competition"] == 0.0 and cfg["objectness_labels"] == 0.3  # the form's knobs reached the run
    assert res.result["labeled"] == 1 and res.result["total"] == 1
    assert ds.exists("sel_confidence").values("id") == [sid]
    requests = [r["operator_uri"] for r in res.executor.to_json()["requests"]]
    assert "reload_dataset" in requests  # immediate: the App reloads
    logs = [r["params"].get("message", "") for r in res.executor.to_json()["requests"]]
    assert any("labeling 1/1" in m and "img/s" in m for m in logs)


def test_compute_call_writes_fields_and_views(labeled):
    ds, result = labeled
    assert result["labeled"] == 3 and result["failed"] == 0
    assert result["segmenter"] == "grabcut"
    assert len(ds.exists("ewc_confidence")) == 3
    schema = ds.get_field_schema()
    assert schema["ewc_mask"].document_type is fo.Segmentation
    assert "ewc_heatmap_gradcam" in schema and "ewc_heatmap_fused" in schema
    assert set(result["views"]) <= set(ds.list_saved_views())
    assert "ewc-low-confidence" in ds.list_saved_views()


def test_errors_are_one_line(labeled):
    ds, _ = labeled
    # a classifier nobody knows is now refused by the form itself (issue 22 item 5) ...
    with pytest.raises(Exception, match="^Validation error. Path: classifier. Reason: unknown classifier"):
        run("compute_ewc", ds, dict(label_field="labels", prefix="bad", classifier="no-such-model", **FAST))
    # ... one that only fails as it loads still comes back as one line
    res = run("compute_ewc", ds, dict(label_field="labels", prefix="bad", classifier="timm:no_such_arch", **FAST))
    assert res.error is None and "cannot load timm model" in res.result["error"]
    assert "\n" not in res.result["error"] and "Traceback" not in res.result["error"]
    assert res.result["error_type"] == "ConfigError"
    notes = _requests(res, "notify")
    assert notes and notes[0]["variant"] == "error" and notes[0]["message"] == res.result["error"]
    # form values that are not numbers: a one-line message naming the field, no ValueError
    with pytest.raises(Exception, match="^Validation error. Path: batch_size. Reason: a whole number is needed, "
                                        "got 'four'$"):
        run("compute_ewc", ds, {"label_field": "labels", "prefix": "bad", **FAST, "batch_size": "four"})
    form = resolve("compute_ewc", ds, {"batch_size": "four", "mask_weight": "lots", "explain_size": "1.5"})
    assert set(invalid(form)) >= {"batch_size", "mask_weight", "explain_size"}
    assert invalid(form)["mask_weight"] == "a number is needed, got 'lots'"
    # from Python, the ewc-fo exception itself
    with pytest.raises(ConfigError, match="cannot load timm model"):
        foo.get_operator(f"{URI}/compute_ewc")(ds, "labels", prefix="bad", classifier="timm:no_such_arch", **FAST)


def test_triage_views(labeled):
    ds, _ = labeled
    for v in list(ds.list_saved_views()):
        if v.startswith("ewc-"):
            ds.delete_saved_view(v)
    res = run("create_triage_views", ds, dict(prefix="ewc"))
    assert res.result["views"][0] == "ewc-low-confidence"
    assert set(res.result["views"]) <= set(ds.list_saved_views())
    reqs = [r["operator_uri"] for r in res.executor.to_json()["requests"]]
    assert "reload_dataset" in reqs and "set_view" in reqs
    assert foo.get_operator(f"{URI}/create_triage_views")(ds, "ewc") == res.result


def test_evaluate(labeled, tmp_path):
    ds, _ = labeled
    # ground truth = the run's own masks: a perfect score, which pins the wiring
    gts = {}
    for s in ds.exists("ewc_mask"):
        p = str(tmp_path / f"{s.id}.png")
        Image.fromarray(np.asarray(Image.open(s.ewc_mask.mask_path))).save(p)
        gts[s.id] = fo.Segmentation(mask_path=p)
    ds.set_values("ground_truth", gts, key_field="id")
    ds.mask_targets = {**ds.mask_targets, "ground_truth": ds.mask_targets["ewc_mask"]}
    ds.save()
    form = resolve("evaluate_masks", ds)
    assert "ewc_mask" in props(form)["pred_field"].type.values
    assert "ground_truth" in props(form)["gt_field"].type.values
    res = run("evaluate_masks", ds, dict(pred_field="ewc_mask", gt_field="ground_truth"))
    assert res.result["miou"] == pytest.approx(1.0)
    assert "mIoU" in res.result["report"]
    assert "ewc_eval" in ds.list_evaluations() and "ewc_iou" in ds.get_field_schema()


@pytest.fixture
def export_root(tmp_path, monkeypatch):
    root = tmp_path / "exports"
    root.mkdir()
    monkeypatch.setenv("EWC_FO_EXPORT_ROOT", str(root))
    return root


def test_export_coco_and_voc(labeled, export_root):
    ds, _ = labeled
    tmp_path = export_root
    coco = tmp_path / "coco"
    res = run("export_masks", ds, dict(prefix="ewc", format="coco", out_dir=str(coco)))
    assert res.result["num_images"] == 3
    labels = json.loads((coco / "labels.json").read_text())
    assert len(labels["images"]) == 3 and labels["annotations"]
    voc = tmp_path / "voc"
    out = foo.get_operator(f"{URI}/export_masks")(ds, str(voc), format="voc")
    assert out["num_images"] == 3 and (voc / "SegmentationClass").is_dir()
    # a non-empty target without overwrite is refused in the form
    assert "out_dir" in invalid(resolve("export_masks", ds, {"prefix": "ewc", "out_dir": str(coco)}))
    # a relative path lands inside the root; the form's default is there too
    rel = foo.get_operator(f"{URI}/export_masks")(ds, "rel/coco", format="coco", copy_images=False)
    assert rel["out_dir"] == str(export_root / "rel" / "coco")
    assert props(resolve("export_masks", ds, {"prefix": "ewc"}))["out_dir"].default.startswith(str(export_root))
    # class ids as `ewc-fo export --classes`: a file here, checked in the form, passed to the export
    names = tmp_path / "names.txt"  # class-list files are read from the export root only
    names.write_text("background\nzebra\ntabby\nespresso\nmissile\ntripod\n")
    outside = tmp_path.parent / "names.txt"
    outside.write_text(names.read_text())
    form = {"prefix": "ewc", "format": "voc", "out_dir": "voc-ids"}
    assert "classes" in props(resolve("export_masks", ds, form))
    assert "classes" not in invalid(resolve("export_masks", ds, {**form, "classes": str(names)}))
    assert "classes" not in invalid(resolve("export_masks", ds, {**form, "classes": "names.txt"}))  # relative
    assert "outside the export root" in invalid(resolve("export_masks", ds, {**form, "classes": str(outside)}))[
        "classes"]
    with pytest.raises(Exception, match="outside the export root"):
        foo.get_operator(f"{URI}/export_masks")(ds, "voc-outside", format="voc", classes=str(outside))
    assert "not 'voc', a file" in invalid(resolve("export_masks", ds, {**form, "classes": "nope"}))["classes"]
    assert "not in the class list" in invalid(resolve("export_masks", ds, {**form, "classes": "voc"}))["classes"]
    ids = run("export_masks", ds, dict(form, classes=str(names)))
    assert ids.result["num_images"] == 3
    voc_ids = export_root / "voc-ids"
    assert (voc_ids / "class_names.txt").read_text().splitlines() == names.read_text().splitlines()
    used = set().union(*(np.unique(np.asarray(Image.open(f))) for f in (voc_ids / "SegmentationClass").glob("*.png")))
    assert used - {0, 255} and used - {0, 255} <= {2, 3, 4, 5}  # the file's ids, not the run's 1..
    js = foo.get_operator(f"{URI}/export_masks")(ds, "coco-ids", format="coco", copy_images=False,
                                                  classes=str(names))
    cats = json.loads((export_root / "coco-ids" / "labels.json").read_text())["categories"]
    assert js["num_images"] == 3 and {c["name"]: c["id"] for c in cats}["tabby"] == 2
    with pytest.raises(Exception, match="not in the class list"):  # the form's check refuses it
        foo.get_operator(f"{URI}/export_masks")(ds, "coco-voc", format="coco", classes="voc")
    assert not (export_root / "coco-voc").exists()


def test_export_form_offers_the_clis_split_and_overlap_options(labeled, export_root, monkeypatch):
    ds, _ = labeled
    assert "split" in props(resolve("export_masks", ds, {"prefix": "ewc", "format": "voc"}))
    assert "overlapping" in props(resolve("export_masks", ds, {"prefix": "ewc", "format": "coco"}))
    out = foo.get_operator(f"{URI}/export_masks")(ds, "voc-val", format="voc", split="val")
    lists = export_root / "voc-val" / "ImageSets" / "Segmentation"
    assert [f.name for f in lists.iterdir()] == ["val.txt"]
    assert len((lists / "val.txt").read_text().split()) == out["num_images"] == 3
    import ewc_fo.fo.io.export as fx

    seen, real = [], fx.export
    monkeypatch.setattr(fx, "export", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    kept = foo.get_operator(f"{URI}/export_masks")(ds, "coco-overlap", format="coco", copy_images=False,
                                                   overlapping=True)
    assert kept["num_images"] == 3 and seen[-1]["overlapping"] is True


def test_export_is_confined_to_the_root(labeled, export_root, tmp_path):
    ds, _ = labeled
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    for path in (str(outside), str(export_root / ".." / "precious"), "../precious", str(export_root)):
        assert "out_dir" in invalid(resolve("export_masks", ds, {"prefix": "ewc", "out_dir": path})), path
        with pytest.raises(Exception, match="outside the export root"):
            run("export_masks", ds, dict(prefix="ewc", format="voc", out_dir=path, overwrite=True))
    assert (outside / "keep.txt").read_text() == "mine"  # nothing deleted
    link = export_root / "link"
    link.symlink_to(outside)  # a link out of the root is outside too
    with pytest.raises(Exception, match="outside the export root"):
        run("export_masks", ds, dict(prefix="ewc", format="voc", out_dir=str(link), overwrite=True))
    assert (outside / "keep.txt").exists()


def _panel(ds, method, sid=None, state=None):
    return run("ewc_review", ds, {"panel_id": "p1", "__method__": method, "panel_state": state or {}},
               current_sample=sid)


def _requests(res, uri):
    return [r["params"] for r in res.executor.to_json()["requests"] if r["operator_uri"] == uri]


def _state(res):
    state = {}
    for p in _requests(res, "patch_panel_state"):  # ctx.panel.set_state patches the App's state
        state.update(p.get("state", {}))
    return state


def test_review_panel(labeled):
    ds, _ = labeled
    ds.untag_samples(["ewc:reject", "ewc:reviewed"])
    low = ds.sort_by("ewc_confidence").values("id")
    res = _panel(ds, "on_load", low[0])
    state = _state(res)
    info = state["info"]
    assert info["id"] == low[0] and info["confidence"] is not None
    rows = state["scores"]
    assert {r["explainer"] for r in rows} == {"gradcam", "eigencam"}
    assert sum(r["weight"] for r in rows) == pytest.approx(1.0, abs=1e-2)
    assert state["overlay"].startswith("data:image/jpeg;base64,")
    assert info["mask"]["instances"] >= 0 and "coverage_pct" in info["mask"]
    assert "0 of 3 done" in state["progress"] and "3 left" in state["progress"]
    shown = json.dumps(_requests(res, "show_panel_output")[0]["output"])
    assert "scores" in shown and "accept" in shown and "histogram" in shown
    assert '"classes"' in shown  # the class chart, each class in its scheme colour (test_review_colours)

    # the grid (no sample open): the panel starts on the least confident sample to review
    assert _state(_panel(ds, "on_load"))["info"]["id"] == low[0]

    # Accept in the sample view: tagged, and the next worst unreviewed sample opens
    res = _panel(ds, "on_accept", low[0])
    assert "ewc:reviewed" in ds[low[0]].tags
    assert _requests(res, "open_sample")[0]["id"] == low[1]
    st = _state(res)
    assert st["info"]["id"] == low[1] and "1 accepted, 0 rejected, **2 left**" in st["progress"]
    # Reject from the grid panel: the sample it shows, then it shows the next one
    res = _panel(ds, "on_reject", None, state={"info": {"id": low[1]}})
    assert "ewc:reject" in ds[low[1]].tags and not _requests(res, "open_sample")
    assert _state(res)["info"]["id"] == low[2]
    # reject after accept: exclusive
    _panel(ds, "on_reject", low[0])
    assert "ewc:reject" in ds[low[0]].tags and "ewc:reviewed" not in ds[low[0]].tags

    res = _panel(ds, "on_next", low[0])
    assert _requests(res, "open_sample")[0]["id"] == low[2]  # the lowest one not yet reviewed
    res = _panel(ds, "on_show_maps", low[2])
    assert _requests(res, "set_active_fields")[0]["fields"] == ["ewc_mask", "ewc_heatmap_fused"]
    ds.untag_samples(["ewc:reject", "ewc:reviewed"])


def test_review_keyboard_operators(labeled):
    ds, _ = labeled
    ds.untag_samples(["ewc:reject", "ewc:reviewed"])
    low = ds.sort_by("ewc_confidence").values("id")
    res = run("review_accept", ds, {}, current_sample=low[0])
    assert "ewc:reviewed" in ds[low[0]].tags and res.result["next"] == low[1]
    assert _requests(res, "open_sample")[0]["id"] == low[1]
    res = run("review_reject", ds, {}, current_sample=low[1])
    assert "ewc:reject" in ds[low[1]].tags and res.result["next"] == low[2]
    assert "ewc-to-review" in ds.list_saved_views()
    assert ds.load_saved_view("ewc-to-review").values("id") == [low[2]]
    ds.untag_samples(["ewc:reject", "ewc:reviewed"])


def test_fit_operator(tmp_path, monkeypatch):
    pytest.importorskip("ewc_fo.fo.fit", reason="ewc_fo.fo.fit not available")
    monkeypatch.setenv("EWC_FO_EXPORT_ROOT", str(tmp_path))  # the checkpoint goes under the root
    two_each = make_dataset(str(tmp_path / "imgs"), "plugin-fit", n=8)  # fitting needs 2 images a class
    out = str(tmp_path / "clf.safetensors")
    res = foo.get_operator(f"{URI}/fit_classifier")(two_each, "labels", out, fit_size=160)
    assert os.path.exists(out) and res["out"] == out
    assert sorted(res["classes"]) == ["espresso", "missile", "tabby", "tripod"]


def test_one_line_errors_in_delegated_runs():
    """A delegated run fails (the Runs page shows it) with the one-line message, no chained cause."""
    common = sys.modules[type(foo.get_operator(f"{URI}/compute_ewc")).__module__.rsplit(".", 1)[0] + "._common"]

    class Ctx:
        delegated = True

    @common.one_line_errors
    def execute(self, ctx):
        raise ConfigError("unknown classifier 'x'\nsecond line")

    with pytest.raises(ConfigError) as info:
        execute(None, Ctx())
    assert str(info.value) == "unknown classifier 'x'" and info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_export_form_refuses_the_datasets_own_folder(labeled, monkeypatch):
    """Inside the root too, 'overwrite' never clears a folder holding the dataset's images."""
    ds, _ = labeled
    images = os.path.dirname(ds.first().filepath)
    monkeypatch.setenv("EWC_FO_EXPORT_ROOT", os.path.dirname(images))
    before = sorted(os.listdir(images))
    form = resolve("export_masks", ds, {"prefix": "ewc", "format": "voc", "out_dir": images, "overwrite": True})
    assert "dataset's own files" in invalid(form)["out_dir"]
    with pytest.raises(Exception, match="dataset's own files"):
        run("export_masks", ds, dict(prefix="ewc", format="voc", out_dir=images, overwrite=True))
    assert sorted(os.listdir(images)) == before


def test_compute_form_ray_fields(ds):
    p = props(resolve("compute_ewc", ds))
    assert "ray_address" in p and "workers" not in p  # in-process unless an address is given
    form = resolve("compute_ewc", ds, {"ray_address": "auto", "prefix": "rayform"})
    p = props(form)
    assert p["workers"].default == 1 and p["gpus_per_worker"].default == 0.0
    assert not invalid(form)
    bad = resolve("compute_ewc", ds, {"ray_address": "auto", "prefix": "rayform", "workers": 0})
    assert list(invalid(bad)) == ["workers"]

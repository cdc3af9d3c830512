"""``dataset.app_config`` after a label run: what the App opens with, and the user's config kept."""

from __future__ import annotations

import fiftyone as fo
import pytest

import ewc_fo
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.fo.review.app_config import PALETTE, class_colors, configure_app, sidebar_group_name
from ewc_fo.fo.runs import record as runs
from ewc_fo.segmenters import create_segmenter

from ._data import make_dataset

FAST = EWCConfig(explain_size=160, explainers=("gradcam", "eigencam"))


def _mask_colors(scheme, path):
    entry = next(f for f in scheme.fields if f["path"] == path)
    return {m["intTarget"]: m["color"] for m in entry["maskTargetsColors"]}


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    ds = make_dataset(str(tmp_path_factory.mktemp("imgs")), "app-config", n=2)
    # a ground-truth mask field with its own ids for the same classes (like VOC's)
    ds.add_sample_field("ground_truth", fo.EmbeddedDocumentField, embedded_doc_type=fo.Segmentation)
    ds.mask_targets = {"ground_truth": {7: "tabby", 9: "espresso", 3: "other"}}
    ds.save()
    ewc_fo.label(ds, "labels", segmenter=create_segmenter("grabcut"), config=FAST, batch_size=2,
                 progress_bar=False, output_dir=str(tmp_path_factory.mktemp("out")))
    return ds


def test_label_run_configures_the_app(labeled):
    ds = labeled
    cfg = ds.app_config
    assert {"labels", "ewc_mask", "ewc_confidence"} <= set(cfg.active_fields.paths)
    assert "ewc_instances" not in cfg.active_fields.paths  # the mask already shows them
    group = next(g for g in cfg.sidebar_groups if g.name == sidebar_group_name("ewc"))
    assert group.paths[:2] == ["ewc_mask", "ewc_confidence"]
    assert "ewc_heatmap_fused" in group.paths
    others = [p for g in cfg.sidebar_groups if g.name != group.name for p in g.paths]
    assert not [p for p in others if p.startswith("ewc_")]
    assert cfg.color_scheme.color_by == "value"
    run = {ds.mask_targets["ewc_mask"][i]: c for i, c in _mask_colors(cfg.color_scheme, "ewc_mask").items()}
    gt = {ds.mask_targets["ground_truth"][i]: c for i, c in _mask_colors(cfg.color_scheme, "ground_truth").items()}
    assert run["tabby"] == gt["tabby"] and run["espresso"] == gt["espresso"]  # same class, same colour
    assert run["tabby"] != run["espresso"]
    labels = next(f for f in cfg.color_scheme.fields if f["path"] == "labels")
    assert {v["value"]: v["color"] for v in labels["valueColors"]}["tabby"] == run["tabby"]


def test_user_config_is_kept(tmp_path):
    ds = make_dataset(str(tmp_path), "app-config-user", n=1)
    for f in ("ewc_mask", "ground_truth"):
        ds.add_sample_field(f, fo.EmbeddedDocumentField, embedded_doc_type=fo.Segmentation)
    ds.add_sample_field("ewc_confidence", fo.FloatField)
    ds.add_sample_field("note", fo.StringField)
    ds.mask_targets = {"ewc_mask": {1: "tabby", 2: "tripod"}, "ground_truth": {5: "tabby", 6: "tripod"}}
    ds.app_config.active_fields = fo.ActiveFields(paths=["note"])
    ds.app_config.sidebar_groups = [fo.SidebarGroupDocument(name="mine", paths=["note", "labels"])]
    ds.app_config.color_scheme = fo.ColorScheme(color_by="field", opacity=0.4, fields=[
        {"path": "ground_truth", "maskTargetsColors": [{"intTarget": 5, "color": "#123456"}]}])
    ds.app_config.grid_media_field = "filepath"
    ds.save()
    configure_app(ds, "ewc", "labels", ["ewc_mask", "ewc_confidence"])
    configure_app(ds, "ewc", "labels", ["ewc_mask", "ewc_confidence"])  # twice: nothing doubles
    cfg = fo.load_dataset(ds.name).app_config
    assert cfg.active_fields.paths == ["note", "labels", "ewc_mask", "ewc_confidence"]
    assert [g.name for g in cfg.sidebar_groups] == ["mine", "ewc-fo ewc"]
    assert cfg.sidebar_groups[0].paths == ["note", "labels"]
    assert cfg.sidebar_groups[1].paths == ["ewc_mask", "ewc_confidence"]
    assert cfg.color_scheme.color_by == "field" and cfg.color_scheme.opacity == 0.4
    gt = _mask_colors(cfg.color_scheme, "ground_truth")
    assert gt[5] == "#123456"  # the user's colour for tabby ...
    assert _mask_colors(cfg.color_scheme, "ewc_mask") == {1: "#123456", 2: gt[6]}  # ... is the run's too
    assert len([f for f in cfg.color_scheme.fields if f["path"] == "ewc_mask"]) == 1


def test_deleting_a_run_takes_back_its_sidebar_group(tmp_path):
    ds = make_dataset(str(tmp_path), "app-config-delete", n=1)
    ds.add_sample_field("note", fo.StringField)
    ds.add_sample_field("note2", fo.StringField)
    ds.app_config.sidebar_groups = [fo.SidebarGroupDocument(name="mine", paths=["note", "labels"])]
    ds.app_config.grid_media_field = "filepath"
    ds.save()
    for p in ("a", "b"):
        fields = {"mask": f"{p}_mask", "confidence": f"{p}_confidence"}
        ds.add_sample_field(fields["mask"], fo.EmbeddedDocumentField, embedded_doc_type=fo.Segmentation)
        ds.add_sample_field(fields["confidence"], fo.FloatField)
        runs.save_run(ds, p, {"fields": fields, "views": [], "status": "complete"})
        configure_app(ds, p, "labels", list(fields.values()))
    # the user moved a field of their own into run b's group
    next(g for g in ds.app_config.sidebar_groups if g.name == "ewc-fo b").paths.append("note2")
    ds.save()
    groups = lambda: {g.name: list(g.paths) for g in ds.app_config.sidebar_groups}  # noqa: E731
    assert groups() == {"mine": ["note", "labels"], "ewc-fo a": ["a_mask", "a_confidence"],
                        "ewc-fo b": ["b_mask", "b_confidence", "note2"]}

    runs.delete_run(ds, "a")
    ds.reload()
    assert groups() == {"mine": ["note", "labels"], "ewc-fo b": ["b_mask", "b_confidence", "note2"]}
    runs.delete_run(ds, "b")
    ds.reload()
    assert groups() == {"mine": ["note", "labels"], "ewc-fo b": ["note2"]}  # the user's field stays
    assert ds.app_config.grid_media_field == "filepath" and "note2" in ds.get_field_schema()
    runs.delete_run(ds, "b")  # gone already: nothing changes
    assert groups() == {"mine": ["note", "labels"], "ewc-fo b": ["note2"]}


def _add_run(ds, p):
    fields = {k: f"{p}_{k}" for k in ("mask", "confidence", "classes")}
    ds.add_sample_field(fields["mask"], fo.EmbeddedDocumentField, embedded_doc_type=fo.Segmentation)
    ds.add_sample_field(fields["classes"], fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
    ds.add_sample_field(fields["confidence"], fo.FloatField)
    runs.save_run(ds, p, {"fields": fields, "views": [], "status": "complete"})
    configure_app(ds, p, "labels", list(fields.values()))


def _two_runs(ds):
    from ewc_fo.fo.review.summary import list_ewc_runs

    for p in ("a", "b"):
        _add_run(ds, p)
        assert list_ewc_runs(ds)[0] == p  # the review panel opens on the newest run
    return fo.load_dataset(ds.name).app_config


def test_second_run_is_the_one_on_screen(tmp_path):
    """Issue 22 item 3: after a run with another prefix only the newest run's fields are active."""
    ds = make_dataset(str(tmp_path), "app-config-two-runs", n=1)
    cfg = _two_runs(ds)
    active = set(cfg.active_fields.paths)
    assert {"labels", "b_mask", "b_confidence", "b_classes"} <= active
    assert not active & {"a_mask", "a_confidence", "a_classes"}  # one mask on a tile
    groups = {g.name: list(g.paths) for g in cfg.sidebar_groups}
    assert groups["ewc-fo a"] == ["a_mask", "a_confidence", "a_classes"]  # still in its group
    configure_app(ds, "a", "labels", ["a_mask", "a_confidence", "a_classes"])  # a re-done: a on screen
    active = set(ds.app_config.active_fields.paths)
    assert {"a_mask", "a_confidence"} <= active and not active & {"b_mask", "b_confidence", "b_classes"}


def test_second_run_never_switches_off_what_the_user_turned_on(tmp_path):
    ds = make_dataset(str(tmp_path), "app-config-two-runs-user", n=1)
    ds.add_sample_field("note", fo.StringField)
    ds.app_config.active_fields = fo.ActiveFields(paths=["note"])
    ds.save()
    _two_runs(ds)
    ds.app_config.active_fields.paths += ["a_mask"]  # the user wants run a's mask back on
    ds.save()
    _add_run(ds, "c")
    active = fo.load_dataset(ds.name).app_config.active_fields.paths
    assert "note" in active and "a_mask" in active  # the user's choices stay
    assert "c_mask" in active and "b_mask" not in active and "b_confidence" not in active


def test_excluded_active_fields_stop_excluding_the_run(tmp_path):
    ds = make_dataset(str(tmp_path), "app-config-exclude", n=1)
    ds.add_sample_field("ewc_confidence", fo.FloatField)
    ds.app_config.active_fields = fo.ActiveFields(exclude=True, paths=["ewc_confidence", "labels", "x"])
    ds.save()
    configure_app(ds, "ewc", "labels", ["ewc_confidence"])
    assert ds.app_config.active_fields.paths == ["x"]


def test_class_colors_are_stable():
    a = class_colors(["cat", "dog", "bird"])
    assert class_colors(["bird", "dog", "cat", "zebra"])["cat"] == a["cat"]  # a new class moves nobody
    assert len(set(a.values())) == 3 and set(a.values()) <= set(PALETTE)
    assert class_colors(["cat"], taken={"cat": "#000001"}) == {"cat": "#000001"}
    many = class_colors([f"c{i}" for i in range(len(PALETTE))])
    assert len(set(many.values())) == len(PALETTE)  # distinct while the palette lasts

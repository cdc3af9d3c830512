"""FiftyOne evaluation on a tiny generated dataset whose IoUs are worked out by hand."""

from __future__ import annotations

import argparse
import math

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from ewc_fo.commands import evaluate as evaluate_cmd
from ewc_fo.fo.review.evaluate import EvaluationReport, evaluate, load_report
from ewc_fo.runtime.errors import ConfigError

V = 255
# ground truth ids: 0 background, 1 cat, 2 dog ; the run uses other ids: 7 cat, 5 dog
GT_A = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, V, V], [2, 2, 2, 2]])
PRED_A = np.array([[0, 0, 7, 7], [0, 0, 7, 7], [0, 0, 5, 5], [5, 5, 5, 5]])  # perfect: IoU 1
GT_B = np.ones((4, 4), int)
PRED_B = np.array([[7] * 4] * 2 + [[0] * 4] * 2)  # cat 8/16 -> .5, background 0/8 -> 0: IoU .25
GT_C = np.array([[0, 0, 2, 2]] * 4)
PRED_C = np.array([[0, 5], [0, 5]])  # 2x2, perfect once resized (nearest): IoU 1
# over A, B, C: background TP 6+8, FP 8 -> 14/22 ; cat TP 4+8, FN 8 -> 12/20 ; dog 12/12
MIOU = (14 / 22 + 12 / 20 + 1.0) / 3
PIXEL_ACC = 38 / 46


def _png(tmp_path, name: str, arr: np.ndarray) -> str:
    path = str(tmp_path / f"{name}.png")
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def _seg(tmp_path, name, arr):
    return fo.Segmentation(mask_path=_png(tmp_path, name, arr))


@pytest.fixture
def dataset(tmp_path):
    ds = fo.Dataset()
    rows = [
        ("a", GT_A, PRED_A, 0.9),
        ("b", GT_B, PRED_B, 0.2),
        ("c", GT_C, PRED_C, 0.8),
        ("d", GT_B, None, 0.5),  # no prediction: skipped
        ("e", None, PRED_B, 0.1),  # no ground truth: skipped
    ]
    samples = []
    for name, gt, pred, conf in rows:
        s = fo.Sample(filepath=str(tmp_path / f"{name}.jpg"), name=name, ewc_confidence=conf)
        if gt is not None:
            s["ground_truth"] = _seg(tmp_path, f"gt_{name}", gt)
        if pred is not None:
            s["ewc_mask"] = _seg(tmp_path, f"pred_{name}", pred)
        samples.append(s)
    ds.add_samples(samples)
    ds.mask_targets = {
        "ground_truth": {0: "background", 1: "cat", 2: "dog"},
        "ewc_mask": {0: "background", 5: "dog", 7: "cat"},
    }
    ds.save()
    yield ds
    ds.delete()


def test_evaluate_by_hand(dataset):
    calls = []
    rep = evaluate(dataset, progress=lambda done, total: calls.append((done, total)))
    assert rep.miou == pytest.approx(MIOU)
    assert rep.pixel_accuracy == pytest.approx(PIXEL_ACC)
    assert rep.per_class_iou == pytest.approx({"background": 14 / 22, "cat": 0.6, "dog": 1.0})
    assert rep.n_samples == 3
    assert rep.n_skipped["missing_pred"] == 1 and rep.n_skipped["missing_gt"] == 1
    assert rep.n_resized == 1 and any("resized" in w for w in rep.warnings)
    assert calls[-1] == (5, 5)

    got = dict(zip(dataset.values("name"), dataset.values("ewc_iou")))
    assert got == pytest.approx({"a": 1.0, "b": 0.25, "c": 1.0, "d": None, "e": None})
    assert rep.mean_sample_iou == pytest.approx(0.75)

    s = rep.confidence["ewc_confidence"]
    assert s["n"] == 3
    assert s["spearman"] == pytest.approx(math.sqrt(3) / 2)  # ranks [3,1,2] vs [2.5,1,2.5]
    assert s["auroc"] == 1.0 and s["recall_at_20"] == 1.0  # b is bad and least confident

    md = rep.to_markdown()
    assert "| cat | 60.0 |" in md and "| mIoU (%) |" in md and "ewc_confidence" in md

    stored = load_report(dataset, "ewc")
    assert stored.miou == pytest.approx(MIOU)
    assert stored.confidence["ewc_confidence"]["auroc"] == 1.0
    assert "ewc_evaluation" not in dataset.info


def test_recorded_as_fiftyone_evaluation(dataset):
    evaluate(dataset)
    assert dataset.list_evaluations() == ["ewc_eval"]
    info = dataset.get_evaluation_info("ewc_eval")
    assert info.config.type == "segmentation" and info.config.pred_field == "ewc_mask"
    res = dataset.load_evaluation_results("ewc_eval")
    # FiftyOne's own tools read our confusion matrix (rows = ground truth, by gt class name)
    assert res.classes.tolist() == ["background", "cat", "dog"]
    cm = res.confusion_matrix(classes=["background", "cat", "dog"])
    assert cm.tolist() == [[14, 0, 0], [8, 12, 0], [0, 0, 12]]  # B: 8 cat pixels called background
    assert res.ewc_report["miou"] == pytest.approx(MIOU)
    assert res.custom_metrics["ewc_fo/miou"]["value"] == pytest.approx(MIOU)
    assert res.custom_metrics["ewc_fo/ewc_confidence_auroc"]["value"] == 1.0
    # per-sample fields FiftyOne's segmentation evaluation promises, and clickable matches
    acc = dict(zip(dataset.values("name"), dataset.values("ewc_eval_accuracy")))
    assert acc["a"] == pytest.approx(1.0) and acc["b"] == pytest.approx(0.5) and acc["d"] is None
    assert ("cat", "background", 8) in {m[:3] for m in zip(res.ytrue, res.ypred, res.weights)}
    report_d = res.ewc_report
    evaluate(dataset)  # a re-run replaces the run
    assert dataset.list_evaluations() == ["ewc_eval"]
    assert load_report(dataset).to_dict() == report_d
    with pytest.raises(ConfigError, match="cannot record evaluation 'ewc_eval'"):
        evaluate(dataset, gt_field="ewc_mask", pred_field="ground_truth", sample_iou_field="x_iou", eval_key="ewc_eval")
    assert "x_iou" not in dataset.get_field_schema()  # refused before any work
    dataset.add_sample_field("mine_recall", fo.FloatField)
    with pytest.raises(ConfigError, match="overwrite field 'mine_recall'"):
        evaluate(dataset, eval_key="mine")  # a user's field is never overwritten
    dataset.delete_evaluation("ewc_eval")
    assert "ewc_eval_accuracy" not in dataset.get_field_schema()
    assert "ewc_iou" in dataset.get_field_schema()


def test_model_evaluation_panel_reads_it(dataset):
    """The App's Model Evaluation panel computes its page from the recorded run."""
    from types import SimpleNamespace

    from plugins.panels.model_evaluation import EvaluationPanel  # FiftyOne's built-in panel

    evaluate(dataset)
    panel = SimpleNamespace(get_state=lambda key: {"key": "ewc_eval"}, set_data=lambda *a: None)
    data = EvaluationPanel().get_evaluation_data(SimpleNamespace(dataset=dataset, params={}, panel=panel))
    assert data["confusion_matrix"]["classes"] == ["background", "cat", "dog"]
    assert data["missing"] == "background"
    assert data["custom_metrics"]["ewc_fo/miou"]["value"] == pytest.approx(MIOU)
    # FiftyOne's own accuracy leaves out background-on-background pixels (background is its
    # "missing" class): 12 cat + 12 dog right of 46 - 14
    assert data["metrics"]["accuracy"] == pytest.approx(24 / 32)


def test_view_in_db_masks_and_identity_ids(tmp_path):
    ds = fo.Dataset()
    ds.add_samples(
        [
            fo.Sample(filepath=str(tmp_path / "x.jpg"), gt=fo.Segmentation(mask=GT_A.astype(np.uint8)),
                      run_mask=fo.Segmentation(mask=np.where(GT_A == 2, 1, GT_A).astype(np.uint8))),
            fo.Sample(filepath=str(tmp_path / "y.jpg"), gt=fo.Segmentation(mask=GT_B.astype(np.uint8)),
                      run_mask=fo.Segmentation(mask=GT_B.astype(np.uint8))),
        ]
    )
    ds.default_mask_targets = {0: "background", 1: "cat", 2: "dog"}
    ds.save()
    # no pred targets: same ids. A: dog predicted as cat -> bg 1, cat 4/8, dog 0 ; B perfect
    rep = evaluate(ds.limit(1), "run_mask", "gt", store=False)
    assert rep.miou == pytest.approx((1 + 0.5 + 0) / 3)
    assert ds.values("run_iou") == pytest.approx([0.5, None])
    assert rep.confidence == {}
    assert ds.list_evaluations() == []
    rep = evaluate(ds, "run_mask", "gt", sample_iou_field="")
    assert ds.values("run_iou") == pytest.approx([0.5, None])  # not written again
    # cat: TP 4+16, FP 4 -> 20/24 ; dog: FN 4 -> 0 ; background 1
    assert rep.miou == pytest.approx((1 + 20 / 24 + 0) / 3)
    with pytest.raises(ConfigError):
        evaluate(ds, "nope_mask", "gt")
    with pytest.raises(ConfigError):
        evaluate(ds, "run_mask", "gt", sample_iou_field="gt")
    ds.delete()


def test_report_roundtrip_nan():
    rep = EvaluationReport("p", "g", math.nan, 0.5, {"cat": math.nan}, 0)
    d = rep.to_dict()
    assert d["miou"] is None and d["per_class_iou"]["cat"] is None
    back = EvaluationReport.from_dict(d)
    assert math.isnan(back.miou) and math.isnan(back.per_class_iou["cat"])
    assert "—" in back.to_markdown()


def test_cli(dataset, capsys):
    dataset.name = "ewc-eval-cli-test"
    parser = argparse.ArgumentParser()
    evaluate_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", dataset.name, "--iou-field", "cli_iou", "--no-store"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"| mIoU (%) | {100 * MIOU:.1f} |" in out
    assert dataset.values("cli_iou")[:3] == pytest.approx([1.0, 0.25, 1.0])
    args = parser.parse_args(["evaluate", dataset.name, "--view", "missing"])
    with pytest.raises(ConfigError, match="saved view"):
        args.func(args)

"""Metric definitions checked against numbers worked out by hand (see comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ewc_fo.metrics import (
    ConfusionMatrix,
    auroc_bad,
    deletion_insertion_auc,
    recall_at_fraction,
    sample_iou,
    spearman,
)
from ewc_fo.runtime.errors import ConfigError

V = 255
GT = np.array([[0, 0, 1, 1], [0, V, 1, 1], [2, 2, V, 1]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [2, 0, 2, 1]], dtype=np.uint8)
# valid (gt, pred) pairs: gt0 -> pred 0,0,1 ; gt1 -> pred 1,1,1,1,0 ; gt2 -> pred 2,0
# class 0: TP 2, FN 1, FP 2 (gt1->0, gt2->0)      -> 2/5
# class 1: TP 4, FN 1, FP 1 (gt0->1)              -> 4/6
# class 2: TP 1, FN 1, FP 0 (pred 2 on void ignored) -> 1/2
# class 3: absent from both                        -> NaN
EXPECTED = [2 / 5, 4 / 6, 1 / 2]


def test_confusion_matrix_by_hand():
    cm = ConfusionMatrix(4).update(PRED, GT)
    iou = cm.iou()
    np.testing.assert_allclose(iou[:3], EXPECTED)
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx(sum(EXPECTED) / 3)
    assert cm.pixel_accuracy() == pytest.approx(7 / 10)
    assert cm.n_pixels == 10
    d = cm.per_class_dict(["background", "cat", "dog", "bird"])
    assert d["cat"] == pytest.approx(4 / 6) and math.isnan(d["bird"])
    assert list(cm.per_class_dict({0: "bg"})) == ["bg", "1", "2", "3"]


def test_accumulation_is_over_pixels_not_images():
    cm = ConfusionMatrix(4).update(PRED, GT).update(PRED[:1], GT[:1])
    one = ConfusionMatrix(4).update(np.concatenate([PRED, PRED[:1]]), np.concatenate([GT, GT[:1]]))
    np.testing.assert_array_equal(cm.matrix, one.matrix)
    other = ConfusionMatrix(4).update(PRED, GT)
    other += ConfusionMatrix(4).update(PRED[:1], GT[:1])
    np.testing.assert_array_equal(other.matrix, cm.matrix)


def test_class_only_in_pred_and_out_of_range_pred():
    # gt [0, 0], pred [0, 3]: class 0 TP1 FN1 -> 1/2 ; class 3 FP1 -> 0 ; mean 1/4
    gt, pred = np.array([0, 0]), np.array([0, 3])
    assert ConfusionMatrix(4).update(pred, gt).miou() == pytest.approx(0.25)
    assert sample_iou(pred, gt, 4) == pytest.approx(0.25)
    # a pred value outside [0, C) is wrong for the gt class and a false positive for none
    cm = ConfusionMatrix(3).update(np.array([1, 255]), np.array([1, 1]))
    assert cm.iou()[1] == pytest.approx(0.5)
    assert np.isnan(cm.iou()[[0, 2]]).all()
    assert cm.pixel_accuracy() == pytest.approx(0.5)


def test_sample_iou_and_void():
    assert sample_iou(PRED, GT, 4) == pytest.approx(sum(EXPECTED) / 3)
    assert sample_iou(GT, GT, 4) == 1.0
    assert math.isnan(sample_iou(PRED, np.full_like(GT, V), 4))
    assert math.isnan(ConfusionMatrix(4).miou())


def test_bad_inputs():
    with pytest.raises(ValueError, match="outside"):
        ConfusionMatrix(2).update(np.zeros(2), np.array([0, 5]))
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(2).update(np.zeros(3), np.zeros(2))


def test_spearman():
    x = np.arange(1.0, 6.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    # NaN pairs dropped: remaining (1,1),(2,2),(4,4)
    assert spearman([1, 2, np.nan, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    # ranks x=[3,1,2], y=[2.5,1,2.5]: r = 1.5 / sqrt(2 * 1.5) = sqrt(3)/2
    assert spearman([0.9, 0.2, 0.8], [1.0, 0.25, 1.0]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1], [1]))


def test_auroc_bad():
    assert auroc_bad([0.1, 0.2, 0.8, 0.9], [0.1, 0.3, 0.7, 0.9]) == 1.0
    assert auroc_bad([0.9, 0.8, 0.2, 0.1], [0.1, 0.3, 0.7, 0.9]) == 0.0
    # bad = {0, 2}; pairs (bad, good) on 1-conf: (0,1)=1, (0,3)=1, (2,1)=tie 0.5, (2,3)=1 -> 3.5/4
    assert auroc_bad([0.1, 0.5, 0.5, 0.9], [0.2, 0.8, 0.3, 0.9]) == pytest.approx(0.875)
    assert math.isnan(auroc_bad([0.1, 0.9], [0.8, 0.9]))  # no bad mask
    assert math.isnan(auroc_bad([0.1, 0.9], [0.1, 0.2]))  # no good mask
    assert auroc_bad([0.1, 0.9], [0.6, 0.9], threshold=0.7) == 1.0


def test_recall_at_fraction():
    conf = np.arange(10) / 10
    iou = np.ones(10)
    iou[[0, 5, 9]] = 0.1  # bad masks at confidence ranks 0, 5, 9
    assert recall_at_fraction(conf, iou) == pytest.approx(1 / 3)  # reviews ranks 0, 1
    assert recall_at_fraction(conf, iou, 0.6) == pytest.approx(2 / 3)  # ranks 0..5
    assert recall_at_fraction(conf, iou, 1.0) == 1.0
    assert recall_at_fraction(conf, iou, 0.0) == 0.0
    assert math.isnan(recall_at_fraction(conf, np.ones(10)))


# ---- faithfulness: a model whose score is the mean of the top-left 4x4 region of an 8x8 image


def _region_model(calls: list[int]):
    def model_fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        p = x[:, :, :4, :4].mean(dim=(1, 2, 3)).clamp(0, 1)
        return torch.stack([p, 1 - p], dim=1)

    return model_fn


def test_deletion_insertion_known_saliency():
    img = torch.ones(3, 8, 8)
    good = np.zeros((8, 8))
    good[:4, :4] = 1
    calls: list[int] = []
    d, i = deletion_insertion_auc(_region_model(calls), img, good, 0, steps=16, baseline="zero")
    # 4 pixels per step; deletion 1, .75, .5, .25, 0, ... -> (1/16) * (0.5 + 1.5) = 0.125
    assert d == pytest.approx(0.125)
    assert i == pytest.approx(0.875)
    assert calls == [34]  # both curves in one batched forward
    worst = 1 - good  # region last: the reverse
    d_w, i_w = deletion_insertion_auc(_region_model([]), img, worst, 0, steps=16, baseline="zero")
    assert d_w == pytest.approx(0.875) and i_w == pytest.approx(0.125)
    rand = np.random.default_rng(0).random((8, 8))
    d_r, i_r = deletion_insertion_auc(_region_model([]), img, rand, 0, steps=16, baseline="zero")
    assert d < d_r < d_w and i > i_r > i_w


def test_deletion_insertion_batches_resize_and_blur():
    img = torch.rand(1, 3, 8, 8)
    sal = np.random.default_rng(1).random((4, 4))  # resized to 8x8
    calls: list[int] = []
    one = deletion_insertion_auc(_region_model([]), img, sal, 0, steps=8, baseline="zero")
    split = deletion_insertion_auc(_region_model(calls), img, sal, 0, steps=8, baseline="zero", batch_size=4)
    assert one == pytest.approx(split)
    assert calls == [4, 4, 1, 4, 4, 1]
    d, i = deletion_insertion_auc(_region_model([]), img, sal, 0, steps=8, baseline="blur")
    assert 0 <= d <= 1 and 0 <= i <= 1
    with pytest.raises(ConfigError):
        deletion_insertion_auc(_region_model([]), img, sal, 0, baseline="noise")

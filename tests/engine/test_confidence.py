"""The confidence of the written masks (method.md v0.8): an image's from its classes', and a
class's quality where SAM's proposals and the labels from objectness both cut it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ewc_fo.engine.config import ConfigError, EWCConfig
from ewc_fo.engine.results import ClassResult
from ewc_fo.engine.stages import ImageWork, _relabel_by_proposals, image_confidence


def test_image_confidence_is_the_product_of_its_classes_or_their_minimum():
    assert image_confidence([0.9, 0.5]) == pytest.approx(0.45)
    assert image_confidence([0.9, 0.5], "min") == pytest.approx(0.5)
    assert image_confidence([]) == 0.0
    # one more class, each as sure as before: the product says less trust, the minimum not
    assert image_confidence([0.8, 0.8, 0.8]) < image_confidence([0.8, 0.8]) < 0.8
    assert image_confidence([0.8, 0.8, 0.8], "min") == pytest.approx(0.8)


def test_image_confidence_setting_is_checked():
    assert EWCConfig().image_confidence == "product"
    with pytest.raises(ConfigError, match="image_confidence"):
        EWCConfig(image_confidence="mean")


def _result(shape):
    return ClassResult(class_index=0, class_name="cat", probability=0.9, mask=np.zeros(shape, bool),
                       instances=[], quality=0.5, mass_inside=0.0, confidence=0.0, scores={})


def _work(shape, proposal):
    fused = np.zeros((1, *shape), np.float32)
    fused[0, 10:30, 10:30] = 1.0
    maps = np.stack([fused, fused])  # two explainers that agree
    st = ImageWork(image=np.zeros((*shape, 3), np.uint8), work=np.zeros((*shape, 3), np.uint8),
                   out=SimpleNamespace(scores=np.array([0.9], np.float32)), maps=maps, conc=[], agree=[])
    st.fused, st.proposals = fused, [(proposal, 0.95)]
    return st


def test_with_objectness_a_class_is_trusted_where_the_two_cuts_agree():
    """The class's quality is the IoU of its mask from the proposals with its mask in the
    labels from objectness: the same proposal (predicted IoU 0.95) earns less trust where the
    objectness labels cut the class differently."""
    shape = (40, 40)
    prop = np.zeros(shape, bool)
    prop[10:30, 10:30] = True
    obj = np.ones(shape, np.float32)
    cfg = EWCConfig()
    agree = [1.0]

    same = np.zeros(shape, np.uint8)
    same[10:30, 10:30] = 1
    r = [_result(shape)]
    lab = _relabel_by_proposals(cfg, _work(shape, prop), r, same, agree, obj)
    assert (lab[prop] == 1).all()
    assert r[0].quality == pytest.approx(1.0)

    half = np.zeros(shape, np.uint8)
    half[10:30, 10:20] = 1  # the objectness labels hold half of it
    r2 = [_result(shape)]
    _relabel_by_proposals(cfg, _work(shape, prop), r2, half, agree, obj)
    assert r2[0].quality == pytest.approx(0.5)
    assert 0 < r2[0].confidence < r[0].confidence

    # without objectness the proposals' predicted IoU is the quality (v0.6)
    r3 = [_result(shape)]
    _relabel_by_proposals(cfg, _work(shape, prop), r3, half, agree)
    assert r3[0].quality == pytest.approx(0.95)

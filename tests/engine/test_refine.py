"""The refinement stage: soft evidence from the fused map and the segmenter's masks, refined
with the image (dense CRF or pixel-adaptive refinement), and its place in the pipeline."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest

from ewc_fo.engine.pipeline import EWC, EWCConfig
from ewc_fo.engine.refine import (
    check_method,
    probabilities,
    refine_labels,
    refine_regions,
    refine_segmentations,
)
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import GrabCutSegmenter, Segmentation
from ewc_fo.testing import synthetic_image, synthetic_scene

FAST = EWCConfig(explainers=("gradcam", "layercam"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _too_small_mask_case():
    """A red disc whose segmenter mask is too small (eroded) and whose map is a blurred blob
    over it: the image's edges say where the object ends."""
    img, disc = synthetic_scene((96, 128), center=(64, 48), radius=26)
    yy, xx = np.mgrid[:96, :128]
    small = (yy - 48) ** 2 + (xx - 64) ** 2 < 16 ** 2
    fmap = np.exp(-((yy - 48) ** 2 + (xx - 64) ** 2) / (2 * 22.0 ** 2)).astype(np.float32)
    return img, disc, small, fmap[None]


@pytest.mark.parametrize("beta", [0.5, 0.75])
def test_unrefined_evidence_is_the_segmenters_mask(beta):
    img, disc, small, fmap = _too_small_mask_case()
    p = probabilities(fmap, [small], beta=beta)
    assert p.shape == (2, 96, 128)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(p.argmax(0) == 1, small)
    np.testing.assert_array_equal(refine_labels(img, fmap, [small], method="none") == 1, small)


@pytest.mark.parametrize("method", ["pamr", "crf"])
def test_refinement_follows_the_image(method):
    if method == "crf":
        pytest.importorskip("pydensecrf.densecrf")
    img, disc, small, fmap = _too_small_mask_case()
    lab = refine_labels(img, fmap, [small], [0.9], method=method)
    assert lab.shape == (96, 128) and lab.dtype == np.uint8 and set(np.unique(lab)) <= {0, 1}
    assert _iou(lab == 1, disc) > _iou(small, disc) + 0.1


def test_refined_regions_keep_instances_and_qualities():
    lab = np.zeros((10, 20), np.uint8)
    lab[2:8, 1:19] = 1  # the refinement grew and joined two regions
    left, right = np.zeros((10, 20), bool), np.zeros((10, 20), bool)
    left[3:7, 2:6], right[3:7, 14:18] = True, True
    parts = refine_regions(lab, 0, [left, right])
    assert len(parts) == 2 and not (parts[0] & parts[1]).any()
    np.testing.assert_array_equal(parts[0] | parts[1], lab == 1)
    assert parts[0][5, 1] and parts[1][5, 18]
    segs = [Segmentation([left, right], [0.9, 0.4], (10, 20))]
    img = np.zeros((10, 20, 3), np.uint8)
    (out,) = refine_segmentations(img, np.ones((1, 10, 20), np.float32), segs, None, "none")
    assert out is segs[0]


def test_unknown_method_and_missing_crf_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="refine must be one of"):
        EWCConfig(refine="bilateral")
    with pytest.raises(ConfigError, match="refine_mask_weight"):
        EWCConfig(refine_mask_weight=1.5)
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ConfigError, match="pip install pydensecrf2.*pamr"):
        check_method("crf")
    with pytest.raises(ConfigError, match="pydensecrf"):
        EWCConfig(refine="crf")


@pytest.mark.parametrize("segmenter", ["grabcut", "sam2"])
def test_pipeline_masks_are_the_refined_label_map(tiny_clf, segmenter, request):
    seg = GrabCutSegmenter() if segmenter == "grabcut" else request.getfixturevalue("sam2_seg")
    img = synthetic_image((64, 80))
    classes = [["class_0", "class_1"]]
    (plain,) = EWC(tiny_clf, seg, FAST).run([img], classes)
    (ref,) = EWC(tiny_clf, seg, replace(FAST, refine="pamr")).run([img], classes)
    np.testing.assert_array_equal(ref.fused, plain.fused)  # refinement comes after fusion
    expect = refine_labels(img, plain.fused, [c.mask for c in plain.classes],
                           [c.probability for c in plain.classes], "pamr")
    np.testing.assert_array_equal(ref.label_map, expect)
    for c, cr in enumerate(ref.classes):
        np.testing.assert_array_equal(cr.mask, ref.label_map == c + 1)
        union = np.zeros_like(cr.mask)
        for m, q in cr.instances:
            union |= m
            assert 0.0 <= q <= 1.0
        np.testing.assert_array_equal(union, cr.mask)
        assert 0.0 <= cr.confidence <= 1.0


@pytest.mark.parametrize("method", ["pamr", "crf"])
def test_many_classes_on_a_large_image(method):
    """Five classes and an image above the refinement's 320 px working side (resampled one
    plane at a time: OpenCV's area resize takes at most 4 channels)."""
    if method == "crf":
        pytest.importorskip("pydensecrf.densecrf")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (360, 480, 3), dtype=np.uint8)
    maps = np.zeros((5, 360, 480), np.float32)
    for c in range(5):
        maps[c, 20:340, 20 + 90 * c:100 + 90 * c] = 1.0
    lab = refine_labels(img, maps, [m > 0.5 for m in maps], None, method)
    assert lab.shape == (360, 480)
    for c in range(5):  # each class keeps the middle of its own strip
        assert lab[180, 60 + 90 * c] == c + 1

"""Segmenters: GrabCut on a synthetic disc (known answer), SAM2 with the real tiny config
and random weights (shapes, ranges, one embedding for many prompts), empty prompts."""

from __future__ import annotations

import numpy as np
import pytest

from ewc_fo.engine.prompts import Prompt, PromptConfig, Region, make_prompt
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import GrabCutSegmenter, Segmentation, create_segmenter
from ewc_fo.testing import blob_map, iou, synthetic_scene

EMPTY = Prompt([], np.zeros((0, 2), np.float32))


def _box_prompt(mask: np.ndarray, pad: int = 6) -> Prompt:
    """A loose box around ``mask`` with one positive point at its centre, no soft map."""
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad], np.float32)
    centre = np.array([[xs.mean(), ys.mean()]], np.float32)
    return Prompt([Region(box, centre)], np.zeros((0, 2), np.float32))


def _blob_prompt(shape, centre, sigma) -> Prompt:
    return make_prompt(blob_map(shape, centre, sigma), PromptConfig())


# ---------------------------------------------------------------- GrabCut


def test_grabcut_box_prompt_finds_the_disc(disc_scene):
    img, disc = disc_scene
    seg = create_segmenter("grabcut")
    seg.set_image(img)
    res = seg.segment(_box_prompt(disc))
    assert res.mask.shape == disc.shape and res.mask.dtype == bool
    assert iou(res.mask, disc) > 0.8
    assert len(res.masks) == 1 and 0.5 < res.quality <= 1.0  # red on green/blue: well separated


def test_grabcut_map_prompt_finds_the_disc(disc_scene):
    img, disc = disc_scene
    seg = GrabCutSegmenter()
    seg.set_image(img)
    res = seg.segment(_blob_prompt(img.shape[:2], (70, 46), 16))
    assert iou(res.mask, disc) > 0.8


def test_grabcut_is_deterministic(disc_scene):
    img, disc = disc_scene
    p = _blob_prompt(img.shape[:2], (60, 40), 20)  # off-centre on purpose: GMMs must decide
    runs = []
    for _ in range(2):
        seg = GrabCutSegmenter(seed=0)
        seg.set_image(img)
        runs.append(seg.segment(p))
    np.testing.assert_array_equal(runs[0].mask, runs[1].mask)
    assert runs[0].qualities == runs[1].qualities


def test_grabcut_works_downscaled_and_returns_full_size_masks():
    img, disc = synthetic_scene((480, 640), center=(350, 230), radius=120)
    seg = GrabCutSegmenter(max_side=160)
    seg.set_image(img)
    res = seg.segment(_box_prompt(disc, pad=30))
    assert res.mask.shape == (480, 640)
    assert iou(res.mask, disc) > 0.8


def test_grabcut_one_instance_per_region():
    img, a = synthetic_scene((96, 160), center=(35, 48), radius=20)
    img2, b = synthetic_scene((96, 160), center=(120, 48), radius=20, seed=1)
    img = np.where(b[..., None], img2, img)
    m = np.maximum(blob_map((96, 160), (35, 48), 12), blob_map((96, 160), (120, 48), 12))
    seg = GrabCutSegmenter()
    seg.set_image(img)
    res = seg.segment(make_prompt(m))
    assert len(res.masks) == 2
    assert iou(res.mask, a | b) > 0.7
    assert all(0 <= q <= 1 for q in res.qualities)


def test_grabcut_empty_prompt_gives_empty_result(disc_scene):
    img, _ = disc_scene
    seg = GrabCutSegmenter()
    seg.set_image(img)
    (res,) = seg.segment_many([make_prompt(np.zeros(img.shape[:2], np.float32))])
    assert res.masks == [] and res.quality == 0.0
    assert res.mask.shape == img.shape[:2] and not res.mask.any()


def test_segment_before_set_image_is_a_clear_error():
    with pytest.raises(RuntimeError, match="set_image"):
        GrabCutSegmenter().segment(EMPTY)


def test_segmentation_union_and_area_weighted_quality():
    a = np.zeros((4, 4), bool)
    a[0, :] = True  # 4 px
    b = np.zeros((4, 4), bool)
    b[2:, 2:] = True  # 4 px
    s = Segmentation([a, b], [1.0, 0.5], (4, 4))
    assert s.mask.sum() == 8 and s.quality == pytest.approx(0.75)
    assert Segmentation(shape=(4, 4)).quality == 0.0


def test_create_segmenter_errors(monkeypatch):
    monkeypatch.delenv("EWC_SAM2_CHECKPOINT", raising=False)
    assert isinstance(create_segmenter("auto"), GrabCutSegmenter)  # no checkpoint: fall back
    with pytest.raises(ConfigError):
        create_segmenter("mask-rcnn")
    with pytest.raises(ConfigError):
        create_segmenter("sam2")  # needs a checkpoint
    with pytest.raises(ConfigError, match="not found"):
        create_segmenter("sam2", checkpoint="/no/such/sam2.pt")


# ---------------------------------------------------------------- SAM2 (random weights)


@pytest.fixture(scope="module")
def sam2_on_disc(sam2_seg):
    """SAM2 with the disc image embedded once, and the encoder/set_image call counts."""
    img, disc = synthetic_scene((96, 128), center=(70, 46), radius=24)
    counts = {"set_image": 0, "encoder": 0}
    pred = sam2_seg.predictor
    real_set_image = pred.set_image

    def counting_set_image(*a, **k):
        counts["set_image"] += 1
        return real_set_image(*a, **k)

    pred.set_image = counting_set_image
    h = pred.model.image_encoder.register_forward_hook(
        lambda *a: counts.__setitem__("encoder", counts["encoder"] + 1))
    try:
        sam2_seg.set_image(img)
        yield sam2_seg, img, disc, counts
    finally:
        h.remove()
        del pred.set_image  # back to the class method


def test_sam2_masks_shapes_and_qualities(sam2_on_disc):
    seg, img, disc, counts = sam2_on_disc
    prompts = [_box_prompt(disc), _blob_prompt(img.shape[:2], (70, 46), 16), EMPTY,
               _blob_prompt(img.shape[:2], (30, 30), 8)]
    res = seg.segment_many(prompts)
    assert len(res) == 4
    for r, p in zip(res, prompts):
        assert len(r.masks) == len(p.regions) == len(r.qualities)
        assert all(m.shape == img.shape[:2] and m.dtype == bool for m in r.masks)
        assert all(0.0 <= q <= 1.0 for q in r.qualities)
        assert r.mask.shape == img.shape[:2]
    assert res[2].masks == [] and not res[2].mask.any() and res[2].quality == 0.0


def test_sam2_one_embedding_serves_many_prompts(sam2_on_disc):
    seg, img, disc, counts = sam2_on_disc
    before = dict(counts)
    for _ in range(3):
        seg.segment_many([_box_prompt(disc)] * 5)
    seg.segment(_blob_prompt(img.shape[:2], (70, 46), 16))
    assert counts == before == {"set_image": 1, "encoder": 1}


def test_sam2_empty_prompt_list_and_empty_prompt(sam2_on_disc):
    seg, *_ = sam2_on_disc
    assert seg.segment_many([]) == []
    assert seg.segment(EMPTY).masks == []


def test_sam2_describe(sam2_seg):
    d = sam2_seg.describe()
    assert d["name"] == "sam2" and d["checkpoint"].startswith("random-init:")

"""EWC end to end: a real photo with the real classifier, determinism, typed errors,
odd image sizes, and SAM2 embedding reuse."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ewc_fo.engine.maps import compete, merge
from ewc_fo.engine.pipeline import BATCH_STAGES, DEFAULT_EXPLAINERS, EWC, EWCConfig, batch_shares
from ewc_fo.runtime.errors import ConfigError, ImageLoadError, NoLabelError, UnknownClassError
from ewc_fo.segmenters import GrabCutSegmenter
from ewc_fo.testing import synthetic_image, synthetic_scene

FAST = EWCConfig(explainers=("gradcam", "eigencam", "layercam"))


@pytest.fixture(scope="module")
def chelsea_run(lite_clf, chelsea):
    """One default EWC run (EfficientNet-Lite0 + GrabCut) on the tabby cat photo."""
    ewc = EWC(lite_clf, GrabCutSegmenter(), EWCConfig())
    return ewc, ewc.run([chelsea], [["tabby"]])[0]


def test_real_photo_tabby(chelsea_run, chelsea):
    _, r = chelsea_run
    (c,) = r.classes
    H, W = chelsea.shape[:2]
    assert c.class_name == "tabby" and c.class_index == 281
    assert r.label_map.shape == (H, W) and r.label_map.dtype == np.uint8
    assert c.mask.shape == (H, W) and c.mask.any() and not c.empty
    assert set(np.unique(r.label_map)) <= {0, 1}
    np.testing.assert_array_equal(r.label_map == 1, c.mask)
    assert 0.0 <= c.confidence <= 1.0 and 0.0 <= r.confidence <= 1.0
    assert 0.0 <= c.quality <= 1.0 and 0.0 <= c.mass_inside <= 1.0 and 0.0 < c.probability < 1.0
    assert 0.0 <= r.agreement <= 1.0
    weights = [s["weight"] for s in c.scores.values()]
    assert sum(weights) == pytest.approx(1.0)
    assert r.explainer_names == list(c.scores) and r.maps.shape[:2] == (len(DEFAULT_EXPLAINERS), 1)
    # the cat fills the middle of the picture: the mask covers its centre
    assert c.mask[H // 2, W // 2]


def test_deterministic(chelsea_run, chelsea, lite_clf):
    ewc, first = chelsea_run
    again = EWC(lite_clf, GrabCutSegmenter(), EWCConfig()).run([chelsea], [["tabby"]])[0]
    np.testing.assert_array_equal(first.label_map, again.label_map)
    assert first.classes[0].confidence == again.classes[0].confidence
    np.testing.assert_array_equal(first.fused, again.fused)


def test_label_errors(tiny_clf):
    ewc = EWC(tiny_clf, GrabCutSegmenter(), FAST)
    img = synthetic_image()
    with pytest.raises(UnknownClassError, match="zebra"):
        ewc.run([img], [["zebra"]])
    with pytest.raises(UnknownClassError):
        ewc.run([img], [[5]])
    with pytest.raises(NoLabelError):
        ewc.run([img], [[]])
    with pytest.raises(NoLabelError):
        ewc.run([img, img], [["class_0"], []])
    with pytest.raises(ConfigError):
        ewc.run([img], [["class_0"], ["class_1"]])


def test_bare_label_and_duplicates(tiny_clf):
    ewc = EWC(tiny_clf, GrabCutSegmenter(), FAST)
    img = synthetic_image()
    (a,) = ewc.run([img], ["class_1"])  # a bare label, not a list
    (b,) = ewc.run([img], [["class_1", 1]])  # the same class twice
    assert [c.class_index for c in a.classes] == [c.class_index for c in b.classes] == [1]
    np.testing.assert_array_equal(a.label_map, b.label_map)


@pytest.mark.parametrize("bad", [
    np.zeros((32, 32), np.uint8),  # grayscale: use images.ensure_rgb first
    np.zeros((32, 32, 4), np.uint8),
    np.zeros((32, 32, 3), np.float32),
    np.zeros((7, 7, 3), np.uint8),
])
def test_bad_arrays_are_image_load_errors(tiny_clf, bad):
    with pytest.raises(ImageLoadError):
        EWC(tiny_clf, GrabCutSegmenter(), FAST).run([bad], [["class_0"]])


def test_tiny_8x8_image(tiny_clf):
    """Documented result: an 8x8 image runs like any other (explained at the classifier's
    input size, prompts and GrabCut at 8x8) and gives 8x8 masks; no error, no crash."""
    img = synthetic_image((8, 8))
    (r,) = EWC(tiny_clf, GrabCutSegmenter(), EWCConfig()).run([img], [["class_0", "class_2"]])
    assert r.label_map.shape == (8, 8) and r.maps.shape[2:] == (8, 8)
    for c in r.classes:
        assert c.mask.shape == (8, 8) and 0.0 <= c.confidence <= 1.0


def test_large_image_runs_at_working_size(tiny_clf):
    img, disc = synthetic_scene((2000, 3000), center=(1800, 900), radius=500)
    cfg = EWCConfig(explainers=("gradcam", "eigencam"), max_side=640)
    (r,) = EWC(tiny_clf, GrabCutSegmenter(), cfg).run([img], [["class_1"]])
    assert r.maps.shape == (2, 1, 427, 640) and r.fused.shape == (1, 427, 640)
    assert r.label_map.shape == (2000, 3000)
    c = r.classes[0]
    assert c.mask.shape == (2000, 3000) and all(m.shape == (2000, 3000) for m, _ in c.instances)


def test_batch_of_mixed_sizes_equals_one_by_one(tiny_clf):
    ewc = EWC(tiny_clf, GrabCutSegmenter(), FAST)
    imgs = [synthetic_image((96, 128)), synthetic_image((60, 45), seed=3)]
    classes = [["class_0", "class_1"], ["class_2"]]
    batch = ewc.run(imgs, classes)
    for img, cs, b in zip(imgs, classes, batch):
        (one,) = ewc.run([img], [cs])
        np.testing.assert_array_equal(b.label_map, one.label_map)


def test_options(tiny_clf):
    img = synthetic_image()
    cfg = EWCConfig(explainers="gradcam, eigencam", use_quality=False, keep_explainer_masks=True)
    assert cfg.explainers == ("gradcam", "eigencam")
    (r,) = EWC(tiny_clf, GrabCutSegmenter(), cfg).run([img], [["class_0"]])
    c = r.classes[0]
    assert all(np.isnan(s["quality"]) for s in c.scores.values())
    assert set(c.explainer_masks) == {"gradcam", "eigencam"}
    with pytest.raises(ConfigError):
        EWC(tiny_clf, GrabCutSegmenter(), EWCConfig(explainers=("gradcam", "gradcam")))
    with pytest.raises(ConfigError):
        EWC(tiny_clf, GrabCutSegmenter(), EWCConfig(explainers=("gradcam@nope",)))
    for bad in ({"scales": ()}, {"scales": (0.0,)}, {"max_side": 4}, {"explain_size": 8},
                {"mask_weight": 1.5}, {"class_competition": -0.1}):
        with pytest.raises(ConfigError):
            EWCConfig(**bad)


def test_compete_removes_what_a_stronger_class_explains():
    fused = np.zeros((2, 4, 6), np.float32)
    fused[0, :, :4] = 1.0  # class 0 claims the left two thirds ...
    fused[1, :, 2:] = 1.0  # ... class 1 the right two thirds: they share columns 2-3
    out = compete(fused, [0.9, 0.9], 1.0)
    assert out[0, :, :2].min() == 1 and out[0, :, 2:].max() == 0  # shared columns are nobody's cue
    assert out[1, :, 4:].min() == 1 and out[1, :, :4].max() == 0
    weak = compete(fused, [0.9, 0.3], 1.0)  # a weaker class loses the shared part, the strong keeps most
    assert weak[0, :, :2].min() == 1 and weak[1, :, 2:4].max() == 0 and weak[1, :, 4:].min() == 1
    np.testing.assert_allclose(weak[0, :, 2:4], 1 - 0.3 / 0.9, rtol=1e-5)
    np.testing.assert_array_equal(compete(fused, [0.9, 0.9], 0.0), fused)
    empty = compete(np.zeros((2, 3, 3), np.float32), [0.5, 0.5], 1.0)
    assert empty.max() == 0 and np.isfinite(empty).all()


def test_mask_votes_and_competition_run_end_to_end(tiny_clf):
    img = synthetic_image()
    classes = [["class_0", "class_1"]]
    plain = replace(FAST, mask_weight=0.0, class_competition=0.0)
    base = EWC(tiny_clf, GrabCutSegmenter(), plain).run([img], classes)[0]
    # every explainer votes only with its mask: the fused map is a weighted vote of masks
    (votes,) = EWC(tiny_clf, GrabCutSegmenter(), replace(plain, mask_weight=1.0,
                                                          keep_explainer_masks=True)).run([img], classes)
    np.testing.assert_array_equal(votes.maps, base.maps)
    for c, cr in enumerate(votes.classes):
        w = np.array([cr.scores[n]["weight"] for n in votes.explainer_names])
        m = np.stack([cr.explainer_masks[n] for n in votes.explainer_names]).astype(np.float32)
        expect = np.tensordot(w, m, axes=1)
        if expect.max() > 0:
            np.testing.assert_allclose(votes.fused[c], expect / expect.max(), atol=1e-5)
    # competition rewrites every explainer's maps before anything else sees them
    (comp,) = EWC(tiny_clf, GrabCutSegmenter(), replace(plain, class_competition=1.0)).run([img], classes)
    assert not np.array_equal(comp.maps, base.maps) and comp.maps.max() <= 1.0
    for c in comp.classes:
        assert 0.0 <= c.confidence <= 1.0


def test_merge_gives_overlaps_to_the_strongest_evidence():
    fused = np.zeros((2, 4, 4), np.float32)
    fused[0, :, :2], fused[1, :, 2:] = 1.0, 1.0
    masks = [np.ones((4, 4), bool), np.zeros((4, 4), bool)]
    masks[1][:, 1:] = True
    lm = merge(fused, masks, (4, 4))
    assert lm.tolist() == [[1, 1, 2, 2]] * 4
    assert merge(np.zeros((0, 4, 4), np.float32), [], (4, 4)).sum() == 0


def test_sam2_one_embedding_per_image(tiny_clf, sam2_seg):
    img = synthetic_image((64, 80))
    calls = {"encoder": 0}
    h = sam2_seg.predictor.model.image_encoder.register_forward_hook(
        lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1))
    try:
        (r,) = EWC(tiny_clf, sam2_seg, FAST).run([img], [["class_0", "class_1"]])
    finally:
        h.remove()
    assert calls["encoder"] == 1  # 2 classes x 3 explainer prompts + 2 final prompts
    assert r.label_map.shape == (64, 80)
    for c in r.classes:
        assert c.mask.shape == (64, 80) and 0.0 <= c.quality <= 1.0 and 0.0 <= c.confidence <= 1.0
        assert all(0.0 <= s["quality"] <= 1.0 for s in c.scores.values())


def test_on_stage_reports_each_stage_with_a_rising_share(tiny_clf):
    """Issue 22 item 9: a host can move its bar inside a batch; the shares rise to 1 at the
    last stage, the first batch by the stages' count, later ones by earlier stage times."""
    ewc = EWC(tiny_clf, GrabCutSegmenter(), FAST)
    seen: list[tuple[str, float]] = []
    ewc.on_stage = lambda name, share: seen.append((name, share))
    imgs = [synthetic_image((64, 80), seed=s) for s in range(2)]
    for _ in range(2):  # the second batch's shares come from the first's times
        seen.clear()
        ewc.run(imgs, [[0], [1]])
        names = [n for n, _ in seen]
        assert names[0] == "explain" and names[-1] == "merge" and "segment_fused" in names
        assert [BATCH_STAGES.index(n) for n in names] == sorted(BATCH_STAGES.index(n) for n in names)
        shares = [s for _, s in seen]
        assert shares == sorted(shares) and 0 < shares[0] < 1 and shares[-1] == 1.0


def test_batch_shares_follow_stage_times():
    t = {"explain": 3.0, "segment_explainers": 1.0, "merge": 0.0, "downscale": 5.0}
    s = batch_shares(t)
    assert s["explain"] == pytest.approx(0.75) and s["prepare"] == pytest.approx(0.75)
    assert s["segment_explainers"] == s["merge"] == 1.0
    assert batch_shares({})["explain"] == pytest.approx(1 / len(BATCH_STAGES))

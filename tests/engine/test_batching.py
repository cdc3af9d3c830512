"""The batch-wide engine: SAM2's batched path gives today's per-image masks with one
encoder pass per batch, GrabCut's thread pool gives the sequential masks, the shared
backward gives captum's attributions, bfloat16 autocast runs (on CPU here), an
out-of-memory batch is split and retried, and a missing device is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ewc_fo.engine.explain import explain
from ewc_fo.engine.pipeline import EWC, EWCConfig
from ewc_fo.engine.prompts import Prompt, PromptConfig, Region, make_prompt
from ewc_fo.models.registry import load_classifier
from ewc_fo.runtime.device import autocast_dtype, cpu_count, is_oom, resolve_device
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import GrabCutSegmenter, create_segmenter
from ewc_fo.testing import blob_map, iou, synthetic_image, synthetic_scene

FAST = EWCConfig(explainers=("gradcam", "layercam", "input_x_gradient"))
EMPTY = Prompt([], np.zeros((0, 2), np.float32))


def _scenes():
    """Three images of different sizes, each with a few prompts (one empty image)."""
    a, da = synthetic_scene((96, 128), center=(70, 46), radius=24)
    b, db = synthetic_scene((120, 90), center=(40, 70), radius=20, seed=1)
    c, _ = synthetic_scene((64, 64), seed=2)
    pa = [make_prompt(blob_map(a.shape[:2], (70, 46), 16)), EMPTY,
          make_prompt(np.maximum(blob_map(a.shape[:2], (30, 30), 8), blob_map(a.shape[:2], (100, 70), 8)))]
    box = np.array([20, 45, 60, 95], np.float32)
    pb = [Prompt([Region(box, np.array([[40, 70]], np.float32))], np.array([[5, 5]], np.float32)),
          make_prompt(blob_map(b.shape[:2], (40, 70), 14), PromptConfig(points_per_region=1))]
    return [a, b, c], [pa, pb, [EMPTY]]


def _encoder_calls(seg):
    calls = {"n": 0, "batch": []}

    def hook(module, inputs, output):
        calls["n"] += 1
        calls["batch"].append(inputs[0].shape[0])
    return calls, seg.predictor.model.image_encoder.register_forward_hook(hook)


# ---------------------------------------------------------------- SAM2


def test_sam2_batched_path_gives_the_per_image_masks(sam2_seg):
    images, prompts = _scenes()
    calls, h = _encoder_calls(sam2_seg)
    try:
        sam2_seg.set_images(images)
        batched = sam2_seg.segment_images(prompts)
        assert calls["batch"] == [3]  # ONE encoder pass for the whole batch
        single = []
        for im, ps in zip(images, prompts):
            sam2_seg.set_image(im)
            single.append(sam2_seg.segment_many(ps))
    finally:
        h.remove()
    for im, ps, bs, ss in zip(images, prompts, batched, single):
        assert len(bs) == len(ss) == len(ps)
        for b, s, p in zip(bs, ss, ps):
            assert len(b.masks) == len(s.masks) == len(p.regions)
            for mb, ms in zip(b.masks, s.masks):
                assert mb.shape == im.shape[:2] and mb.dtype == bool
                assert np.array_equal(mb, ms) or iou(mb, ms) >= 0.99
            np.testing.assert_allclose(b.qualities, s.qualities, atol=1e-3)
    assert batched[2][0].masks == [] and batched[0][1].masks == []


def test_sam2_batch_needs_set_images(sam2_seg):
    images, prompts = _scenes()
    sam2_seg.set_image(images[0])
    with pytest.raises(RuntimeError, match="set_images"):
        sam2_seg.segment_images(prompts[:1])
    sam2_seg.set_images(images)
    with pytest.raises(RuntimeError, match="set_image"):
        sam2_seg.segment_many(prompts[0])
    with pytest.raises(ValueError):
        sam2_seg.segment_images(prompts[:2])


def test_sam2_bfloat16_autocast_runs_on_cpu(sam2_seg):
    """The GPU precision path, exercised on CPU: embeddings really are bfloat16."""
    from ewc_fo.segmenters.sam2 import SAM2Segmenter

    seg = SAM2Segmenter(sam2_seg.predictor, "random", precision="bf16")
    images, prompts = _scenes()
    seen = []
    trunk = seg.predictor.model.image_encoder.trunk
    h = trunk.register_forward_hook(lambda m, i, o: seen.append(o[-1].dtype))
    try:
        seg.set_images(images[:1])  # one image: bfloat16 is slow on a CPU, and one shows the dtype
    finally:
        h.remove()
    assert seen == [torch.bfloat16]  # the encoder ran under bfloat16 autocast
    out = seg.segment_images(prompts[:1])
    for im, segs in zip(images, out):
        for s in segs:
            assert all(m.shape == im.shape[:2] and m.dtype == bool for m in s.masks)
            assert all(0.0 <= q <= 1.0 for q in s.qualities)
    assert SAM2Segmenter(sam2_seg.predictor, "random")._amp is None  # CPU default: float32


def test_ewc_embeds_a_batch_in_one_encoder_pass(tiny_clf, sam2_seg):
    imgs = [synthetic_image((64, 80), seed=i) for i in range(3)]
    classes = [["class_0", "class_1"], ["class_2"], ["class_0"]]
    calls, h = _encoder_calls(sam2_seg)
    try:
        batch = EWC(tiny_clf, sam2_seg, FAST).run(imgs, classes)
        assert calls["batch"] == [3]
        one = [EWC(tiny_clf, sam2_seg, FAST).run([im], [cs])[0] for im, cs in zip(imgs, classes)]
    finally:
        h.remove()
    for b, o in zip(batch, one):
        assert [c.class_name for c in b.classes] == [c.class_name for c in o.classes]
        for cb, co in zip(b.classes, o.classes):
            assert iou(cb.mask, co.mask) >= 0.99


# ---------------------------------------------------------------- GrabCut


def test_grabcut_thread_pool_gives_the_sequential_masks():
    images, prompts = _scenes()
    results = []
    for workers in (1, 4):
        seg = GrabCutSegmenter()
        seg.workers = workers
        seg.set_images(images)
        results.append(seg.segment_images(prompts))
    for a_img, b_img in zip(*results):
        for a, b in zip(a_img, b_img):
            assert len(a.masks) == len(b.masks)
            for ma, mb in zip(a.masks, b.masks):
                np.testing.assert_array_equal(ma, mb)
            assert a.qualities == b.qualities
    # and the same as one image at a time through the single-image API
    seg = GrabCutSegmenter()
    for im, ps, got in zip(images, prompts, results[1]):
        seg.set_image(im)
        for s, g in zip(seg.segment_many(ps), got):
            np.testing.assert_array_equal(s.mask, g.mask)


def test_grabcut_batch_needs_set_images():
    with pytest.raises(RuntimeError, match="set_images"):
        GrabCutSegmenter().segment_images([[EMPTY]])


def test_ewc_batch_equals_image_by_image_with_grabcut(tiny_clf):
    """segment_batch (one pool for the batch) and segment_explained (one image) agree."""
    imgs = [synthetic_image((80, 96), seed=i) for i in range(3)]
    classes = [[0, 1], [2], [1]]
    ewc = EWC(tiny_clf, GrabCutSegmenter(), FAST)
    outs = explain(tiny_clf, imgs, classes, ewc.explainers)
    batch = ewc.segment_batch(imgs, imgs, outs)
    for im, o, b in zip(imgs, outs, batch):
        one = ewc.segment_explained(im, im, o)
        np.testing.assert_array_equal(one.label_map, b.label_map)
        np.testing.assert_array_equal(one.fused, b.fused)
        assert [c.confidence for c in one.classes] == [c.confidence for c in b.classes]
    assert ewc.timings["segment_fused"] > 0 and ewc.timings["segment_explainers"] > 0


# ---------------------------------------------------------------- explainers


@pytest.mark.parametrize("name", ["input_x_gradient", "saliency"])
def test_shared_backward_gives_captums_attribution(tiny_clf, name):
    """The gradient attributions come from the CAM pass's backward: same maps as captum's own."""
    imgs = [synthetic_image((96, 128), seed=0), synthetic_image((70, 50), seed=1)]
    classes = [[0, 2], [1]]
    shared = explain(tiny_clf, imgs, classes, ["gradcam", name])
    exp = __import__("ewc_fo.engine.explainers", fromlist=["create_explainer"]).create_explainer(name)
    exp.from_gradient = False  # force captum's own forward + backward
    own = explain(tiny_clf, imgs, classes, ["gradcam", exp])
    for s, o in zip(shared, own):
        np.testing.assert_allclose(s.maps, o.maps, atol=1e-6)


def test_shared_backward_runs_one_forward(tiny_clf):
    n = {"forward": 0}
    h = tiny_clf.model.register_forward_hook(lambda *a: n.__setitem__("forward", n["forward"] + 1))
    try:
        explain(tiny_clf, [synthetic_image()], [[1]], ["gradcam", "layercam", "input_x_gradient"])
    finally:
        h.remove()
    assert n["forward"] == 1


def test_explain_under_bfloat16_autocast(tiny_clf):
    imgs = [synthetic_image((96, 128), seed=0), synthetic_image((70, 50), seed=1)]
    names = ["gradcam", "gradcampp", "layercam", "input_x_gradient"]
    ref = explain(tiny_clf, imgs, [[0], [1, 2]], names)
    amp = explain(tiny_clf, imgs, [[0], [1, 2]], names, amp=torch.bfloat16)
    for r, a in zip(ref, amp):
        assert a.maps.dtype == np.float32 and a.maps.shape == r.maps.shape
        assert a.maps.min() >= 0 and a.maps.max() <= 1
        for k in range(len(names)):  # bfloat16 rounding: the same maps, give or take
            corr = np.corrcoef(a.maps[k].ravel(), r.maps[k].ravel())[0, 1]
            assert corr > 0.9, (names[k], corr)
        np.testing.assert_allclose(a.scores, r.scores, atol=0.05)


# ---------------------------------------------------------------- out of memory


def test_out_of_memory_splits_the_batch_and_retries(tiny_clf, monkeypatch):
    imgs = [synthetic_image((64, 64), seed=i) for i in range(5)]
    classes = [[i % 3] for i in range(5)]
    ewc = EWC(tiny_clf, GrabCutSegmenter(), FAST)
    expected = ewc.run(imgs, classes)
    sizes = []
    real = ewc._run_batch

    def fake(images, cls, errors="raise"):
        sizes.append(len(images))
        if len(images) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(images, cls, errors)

    monkeypatch.setattr(ewc, "_run_batch", fake)
    got = ewc.run(imgs, classes)
    assert sizes == [5, 2, 3, 1, 2]
    assert [r.classes[0].class_index for r in got] == [c[0] for c in classes]
    for g, e in zip(got, expected):
        assert g.label_map.shape == e.label_map.shape


def test_out_of_memory_on_one_image_and_other_errors_propagate(tiny_clf, monkeypatch):
    ewc = EWC(tiny_clf, GrabCutSegmenter(), FAST)

    def oom(images, cls, errors="raise"):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(ewc, "_run_batch", oom)
    with pytest.raises(RuntimeError, match="out of memory"):
        ewc.run([synthetic_image()], [[0]])

    def other(images, cls, errors="raise"):
        raise ValueError("not memory")

    monkeypatch.setattr(ewc, "_run_batch", other)
    with pytest.raises(ValueError):
        ewc.run([synthetic_image()] * 4, [[0]] * 4)
    assert is_oom(torch.OutOfMemoryError("x")) and not is_oom(ValueError("out of memory"))


# ---------------------------------------------------------------- devices


def test_missing_gpu_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match="no CUDA GPU") as e:
        resolve_device("cuda")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        create_segmenter("sam2", checkpoint="random", device="cuda")  # before building SAM2
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        load_classifier("efficientnet_lite0", device="cuda:0")
    assert resolve_device("auto") == torch.device("cpu")


def test_a_gpu_index_past_the_last_one_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"cuda:3.*1 CUDA GPU"):
        resolve_device("cuda:3")


def test_device_names_and_precision():
    assert resolve_device("CPU") == torch.device("cpu")
    for bad in ("gpu", "tpu:0", "cuda:x"):
        with pytest.raises(ConfigError):
            resolve_device(bad)
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("cuda")) == torch.bfloat16
    assert autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ConfigError):
        autocast_dtype(torch.device("cpu"), "fp8")
    assert cpu_count() >= 1

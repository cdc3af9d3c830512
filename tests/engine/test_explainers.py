"""Explainers: shapes and ranges, mixed-size batches, the one-forward/one-backward
property of the CAM family, EigenCAM's sign, and typed errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from ewc_fo.engine.explain import explain
from ewc_fo.engine.explainers import create_explainer, list_explainers
from ewc_fo.engine.pipeline import DEFAULT_EXPLAINERS
from ewc_fo.models.classifier import Classifier
from ewc_fo.runtime.errors import ConfigError, ImageLoadError, UnknownClassError
from ewc_fo.testing import TinyCNN, synthetic_image, synthetic_scene, tiny_classifier

CAM_DEFAULTS = [n for n in list_explainers(defaults_only=True) if create_explainer(n).family == "cam"]


def _images() -> list[np.ndarray]:
    """Three images of different sizes and aspect ratios."""
    return [synthetic_image((96, 128), seed=0), synthetic_image((70, 50), seed=1),
            synthetic_image((40, 40), seed=2)]


def test_registry_lists_the_documented_explainers():
    names = list_explainers()
    for n in ("gradcam", "gradcampp", "xgradcam", "layercam", "eigencam", "scorecam",
              "integrated_gradients", "input_x_gradient", "saliency", "occlusion"):
        assert n in names
    assert set(list_explainers(defaults_only=True)) <= set(names)
    assert {"scorecam", "occlusion"}.isdisjoint(list_explainers(defaults_only=True))  # slow: opt-in
    assert set(CAM_DEFAULTS) == {"gradcam", "gradcampp", "xgradcam", "layercam"}
    assert set(list_explainers(defaults_only=True)) == set(DEFAULT_EXPLAINERS)


@pytest.mark.parametrize("name", list_explainers())
def test_every_explainer_gives_image_sized_maps_in_unit_range(tiny_clf, name):
    imgs = _images()
    classes = [[0, 2], [1], [0]]
    outs = explain(tiny_clf, imgs, classes, [name])
    assert len(outs) == 3
    for img, cs, o in zip(imgs, classes, outs):
        assert o.names == [create_explainer(name).key]
        assert o.classes == cs
        assert o.maps.shape == (1, len(cs), *img.shape[:2])
        assert o.maps.dtype == np.float32
        assert np.isfinite(o.maps).all() and o.maps.min() >= 0 and o.maps.max() <= 1
        assert o.maps.max() == pytest.approx(1.0)  # normalised per map (random net: never empty)
        assert o.scores.shape == (len(cs),) and np.all((o.scores > 0) & (o.scores < 1))


def test_mixed_size_batch_equals_one_by_one(tiny_clf):
    imgs, classes = _images(), [[0, 2], [1], [0]]
    names = CAM_DEFAULTS + ["input_x_gradient"]
    batch = explain(tiny_clf, imgs, classes, names)
    for img, cs, b in zip(imgs, classes, batch):
        (one,) = explain(tiny_clf, [img], [cs], names)
        np.testing.assert_allclose(b.maps, one.maps, atol=1e-4)
        np.testing.assert_allclose(b.scores, one.scores, atol=1e-6)


def test_scores_are_the_classifier_probabilities(tiny_clf):
    imgs = _images()
    outs = explain(tiny_clf, imgs, [[0, 1, 2]] * 3, ["gradcam"])
    np.testing.assert_allclose(np.stack([o.scores for o in outs]), tiny_clf.predict(imgs), atol=1e-5)


def test_cam_family_runs_one_forward_and_one_backward(tiny_clf):
    calls = {"forward": 0, "backward": 0}

    def on_backward(grad):
        calls["backward"] += 1

    def on_forward(module, inputs, output):
        calls["forward"] += 1
        if output.requires_grad:
            output.register_hook(on_backward)

    h = tiny_clf.model.register_forward_hook(on_forward)
    try:
        outs = explain(tiny_clf, _images(), [[0, 1], [2], [0, 1, 2]], CAM_DEFAULTS)
    finally:
        h.remove()
    assert calls == {"forward": 1, "backward": 1}
    assert [len(o.names) for o in outs] == [len(CAM_DEFAULTS)] * 3
    # no parameter gradients are left behind, and the hooks are gone
    assert all(p.grad is None for p in tiny_clf.model.parameters())
    assert not tiny_clf.layers["deep"]._forward_hooks and not tiny_clf.layers["mid"]._forward_hooks


def test_scales_and_flip_cost_one_pass_each(tiny_clf):
    n = {"forward": 0}
    h = tiny_clf.model.register_forward_hook(lambda *a: n.__setitem__("forward", n["forward"] + 1))
    try:
        (o,) = explain(tiny_clf, [synthetic_image()], [[1]], ["gradcam", "eigencam"],
                       scales=(1.0, 1.5), flip=True)
    finally:
        h.remove()
    assert n["forward"] == 4 and o.maps.shape == (2, 1, 96, 128)


@pytest.mark.parametrize("background", ["dark", "texture"])
def test_eigencam_sign_points_at_the_bright_object(tiny_clf, background):
    """SVD's sign is arbitrary; EWC orients it towards the minority of standing-out pixels."""
    img, mask = synthetic_scene((96, 96), center=(30, 60), radius=20, color=(250, 250, 250),
                                background=background)
    (o,) = explain(tiny_clf, [img], [[0]], ["eigencam"])
    m = o.maps[0, 0]
    assert mask[np.unravel_index(m.argmax(), m.shape)]
    assert m[mask].mean() > 3 * m[~mask].mean()


def test_eigencam_sign_on_a_real_network(lite_clf):
    img, mask = synthetic_scene((160, 160), center=(110, 60), radius=30, color=(250, 250, 250),
                                background="dark")
    (o,) = explain(lite_clf, [img], [[0]], ["eigencam"])  # 320 px: a 10x10 feature map
    m = o.maps[0, 0]
    assert mask[np.unravel_index(m.argmax(), m.shape)]
    assert m[mask].mean() > 3 * m[~mask].mean()


def test_layer_selection(tiny_clf):
    img = synthetic_image()
    deep, mid, named = explain(tiny_clf, [img] * 3, [[0]] * 3, ["gradcam"])[0], None, None
    (mid,) = explain(tiny_clf, [img], [[0]], ["gradcam@mid"])
    (named,) = explain(tiny_clf, [img], [[0]], ["gradcam@deep"])
    np.testing.assert_allclose(deep.maps, named.maps, atol=1e-6)
    assert mid.names == ["gradcam@mid"] and not np.allclose(mid.maps, deep.maps)


def test_unknown_explainer_and_layer_are_config_errors(tiny_clf):
    with pytest.raises(ConfigError, match="unknown explainer"):
        create_explainer("gradcam3000")
    with pytest.raises(ConfigError, match="no layer"):
        explain(tiny_clf, [synthetic_image()], [[0]], ["gradcam@layer9"])
    with pytest.raises(ConfigError):
        create_explainer("occlusion", window_size=3)  # misspelt option
    with pytest.raises(ConfigError):
        explain(tiny_clf, [synthetic_image()], [[0]], [])


def test_bad_inputs_are_typed_errors(tiny_clf):
    img = synthetic_image()
    with pytest.raises(UnknownClassError):
        explain(tiny_clf, [img], [[7]], ["gradcam"])
    with pytest.raises(UnknownClassError):
        explain(tiny_clf, [img], [["zebra"]], ["gradcam"])
    with pytest.raises(ImageLoadError):
        explain(tiny_clf, [img[..., 0]], [[0]], ["gradcam"])  # grayscale array: use ensure_rgb
    with pytest.raises(ConfigError):
        explain(tiny_clf, [img, img], [[0]], ["gradcam"])


def test_class_names_are_accepted_and_empty_class_lists_give_empty_maps(tiny_clf):
    img = synthetic_image()
    a, b = explain(tiny_clf, [img, img], [["class_1"], []], ["gradcam"])
    assert a.classes == [1] and a.maps.shape == (1, 1, 96, 128)
    assert b.classes == [] and b.maps.shape == (1, 0, 96, 128)


def test_a_layer_outside_the_forward_pass_is_a_config_error():
    model = TinyCNN(2)
    stray = nn.Conv2d(3, 3, 1)  # never called by forward
    clf = Classifier.from_module(model, ["a", "b"], layers={"stray": stray}, input_size=64)
    with pytest.raises(ConfigError, match="no tensor"):
        explain(clf, [synthetic_image()], [[0]], ["gradcam"])


def test_a_frozen_model_still_explains():
    clf = tiny_classifier(2, seed=3)
    for p in clf.model.parameters():
        p.requires_grad_(False)
    (o,) = explain(clf, [synthetic_image()], [[1]], CAM_DEFAULTS + ["saliency"])
    assert o.maps.shape == (len(CAM_DEFAULTS) + 1, 1, 96, 128) and np.isfinite(o.maps).all()


def test_no_teardown_noise_from_pytorch_grad_cam(tmp_path):
    """pytorch-grad-cam's ``BaseCAM.__del__`` can print "Exception ignored ... TypeError"
    at interpreter exit; Score-CAM prints tqdm bars. A script using every CAM must exit
    with a clean stderr."""
    script = tmp_path / "all_cams.py"
    script.write_text(textwrap.dedent("""
        import torch
        torch.set_num_threads(1)
        from ewc_fo.runtime.errors import ConfigError
        from ewc_fo.engine.explain import explain
        from ewc_fo.engine.explainers import create_explainer, list_explainers
        from ewc_fo.testing import synthetic_image, tiny_classifier

        clf = tiny_classifier(3)
        cams = [create_explainer(n) for n in list_explainers() if create_explainer(n).family == "cam"]
        explain(clf, [synthetic_image(), synthetic_image((50, 60))], [[0, 1], [2]], cams)
        try:
            explain(clf, [synthetic_image()], [[0]], ["gradcam@nope"])
        except ConfigError:
            pass
        KEEP = cams  # alive until interpreter teardown
        print("ok")
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert r.stderr == ""


def test_deterministic(tiny_clf):
    img = synthetic_image()
    names = CAM_DEFAULTS + ["integrated_gradients"]
    a = explain(tiny_clf, [img], [[0, 1]], names)[0]
    torch.manual_seed(123)
    b = explain(tiny_clf, [img], [[0, 1]], names)[0]
    np.testing.assert_array_equal(a.maps, b.maps)

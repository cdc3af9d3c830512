"""Fitting a classifier on labels: a visually obvious generated dataset must be learnt,
Grad-CAM of the fitted model must point at the object, features must be cached, and
bad labels must fail before any work."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ewc_fo.engine.explain import explain
from ewc_fo.engine.explainers import create_explainer
from ewc_fo.models import fitting
from ewc_fo.models.fitting import encode_labels, fit_classifier, heldout_split
from ewc_fo.runtime.errors import ConfigError, ImageLoadError
from ewc_fo.runtime.images import load_image

SHAPES = {"circle": (220, 30, 30), "square": (30, 200, 30), "triangle": (30, 60, 230)}
FIT = {"fit_size": 160, "input_size": 224, "flip": False}


def draw_shape(rng: np.random.Generator, kind: str, size: int = 96) -> tuple[Image.Image, tuple]:
    """A coloured shape at a random place on grey noise; returns the image and its box."""
    bg = rng.normal(128, 30, (size, size, 3)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(bg)
    s = int(rng.integers(size // 4, size // 3))
    x0, y0 = (int(v) for v in rng.integers(2, size - s - 2, 2))
    box = (x0, y0, x0 + s, y0 + s)
    d = ImageDraw.Draw(img)
    if kind == "circle":
        d.ellipse(box, fill=SHAPES[kind])
    elif kind == "square":
        d.rectangle(box, fill=SHAPES[kind])
    else:
        d.polygon([(x0, y0 + s), (x0 + s, y0 + s), (x0 + s // 2, y0)], fill=SHAPES[kind])
    return img, box


def make_shapes(root, n: int = 15, seed: int = 0) -> tuple[list[str], list[str], list[tuple]]:
    rng = np.random.default_rng(seed)
    paths, labels, boxes = [], [], []
    for kind in SHAPES:
        for i in range(n):
            img, box = draw_shape(rng, kind)
            p = root / f"{kind}_{i}.png"
            img.save(p)
            paths.append(str(p))
            labels.append(kind)
            boxes.append(box)
    return paths, labels, boxes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def fitted(shapes, tmp_path_factory):
    paths, labels, _ = shapes
    cache = tmp_path_factory.mktemp("cache")
    return fit_classifier(paths, labels, cache_dir=cache, **FIT), cache


def test_fit_learns_obvious_classes(fitted):
    clf, _ = fitted
    assert clf.class_names == sorted(SHAPES)
    assert not clf.multilabel
    assert clf.meta["metric"] == "accuracy"
    assert clf.meta["heldout_score"] >= 0.9
    assert clf.meta["n_heldout"] >= 3
    # explain resolution is independent of the fit resolution
    assert clf.input_size == 224 and clf.meta["fit_size"] == 160
    assert list(clf.layers) == ["head", "s16"]


def test_gradcam_points_at_the_shape(fitted, shapes):
    clf, _ = fitted
    paths, labels, boxes = shapes
    picks = list(range(0, len(paths), 3))
    images = [load_image(paths[i]) for i in picks]
    classes = [[clf.class_index(labels[i])] for i in picks]
    size = clf.meta["fit_size"]  # explained at the resolution it was fitted at
    outs = explain(clf, images, classes, [create_explainer("gradcam")], size=size)
    tol = 96 * 32 / size  # one cell of the stride-32 map, in image pixels
    hits = 0
    for i, out in zip(picks, outs):
        assert out.scores[0] > 0.5
        m = out.maps[0, 0]
        x0, y0, x1, y1 = boxes[i]
        inside = np.zeros(m.shape, bool)
        inside[y0:y1, x0:x1] = True
        assert m[inside].mean() > 1.1 * m[~inside].mean(), labels[i]
        y, x = np.unravel_index(np.argmax(m), m.shape)
        hits += x0 - tol <= x <= x1 + tol and y0 - tol <= y <= y1 + tol
    assert hits >= 0.9 * len(picks)


def test_second_fit_reuses_cached_features(fitted, shapes, monkeypatch):
    clf, cache = fitted
    paths, labels, _ = shapes
    assert clf.meta["features_computed"] == len(paths)
    calls = []
    orig = fitting.FittedModel.pooled
    monkeypatch.setattr(fitting.FittedModel, "pooled", lambda self, x: calls.append(len(x)) or orig(self, x))
    again = fit_classifier(paths, labels, cache_dir=cache, head="mlp", hidden=32, seed=1, **FIT)
    assert calls == []  # no image went through the backbone
    assert again.input_size == 224
    assert again.meta["features_computed"] == 0
    assert again.meta["features_cached"] == len(paths)
    assert again.meta["heldout_score"] >= 0.9
    # another preprocessing is another cache entry
    calls.clear()
    third = fit_classifier(paths[::4], labels[::4], cache_dir=cache, fit_size=96, flip=True)
    assert third.meta["features_computed"] == len(paths[::4])
    assert len(calls) == 2 * ((len(paths[::4]) + 3) // 4)  # each pass (4 images on a CPU) and its mirror


def test_multilabel_uses_bce_and_map(shapes, tmp_path):
    paths, labels, _ = shapes
    multi = [[lab] + (["square"] if i % 3 == 0 and lab != "square" else []) for i, lab in enumerate(labels)]
    clf = fit_classifier(paths, multi, cache_dir=tmp_path, fit_size=96, flip=False, epochs=50)
    assert clf.multilabel
    assert clf.meta["metric"] == "mAP"
    assert 0.0 <= clf.meta["heldout_score"] <= 1.0
    p = clf.predict([load_image(paths[0])])
    assert p.shape == (1, 3) and not np.isclose(p.sum(), 1.0)  # sigmoids, not a softmax


def test_finetune_last_blocks_runs(shapes, tmp_path):
    paths, labels, _ = shapes
    sub = slice(None, None, 6)
    clf = fit_classifier(paths[sub], labels[sub], cache_dir=tmp_path, fit_size=64, finetune_blocks=1,
                         finetune_epochs=1, epochs=20)
    assert clf.meta["trainable_prefixes"] == ["head", "backbone.net._conv_head", "backbone.net._bn1"]
    assert all(p.requires_grad for p in clf.model.parameters())  # explainers need gradients


def test_torchvision_backbone_layers(shapes, tmp_path):
    paths, labels, _ = shapes
    clf = fit_classifier(paths[::6], labels[::6], backbone="torchvision:resnet18", pretrained=False,
                         cache_dir=tmp_path, fit_size=64, epochs=5)
    assert list(clf.layers) == ["features", "layer3"]
    assert clf.name == "fit:torchvision:resnet18"


def test_cam_layers_override(shapes, tmp_path):
    paths, labels, _ = shapes
    clf = fit_classifier(paths[::6], labels[::6], cache_dir=tmp_path, fit_size=64, epochs=5,
                         cam_layer_paths=["backbone.net._blocks.10"])
    assert list(clf.layers) == ["backbone.net._blocks.10"]
    with pytest.raises(ConfigError, match="CAM layer"):
        fit_classifier(paths[::6], labels[::6], cache_dir=tmp_path, fit_size=64,
                       cam_layer_paths=["nope"])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ([], "no labels"),
        ([None, None], "no labels"),
        (["a", "a", "a"], "only one class"),
        ([1, 2, 1, 2], "class-name strings"),
        (["a", ["b"], "a", "b"], "mix"),
        ([["a"], ["a"], ["a"]], "same labels"),
    ],
)
def test_bad_labels_fail_before_work(labels, match, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a model was built")

    monkeypatch.setattr(fitting, "build_fitted_model", boom)
    with pytest.raises(ConfigError, match=match):
        fit_classifier([f"/nonexistent/{i}.png" for i in range(len(labels))], labels)


def test_missing_image_fails_before_model(tmp_path, monkeypatch):
    monkeypatch.setattr(fitting, "build_fitted_model", lambda *a, **k: 1 / 0)
    with pytest.raises(ImageLoadError, match="not found"):
        fit_classifier([tmp_path / "a.png", tmp_path / "b.png"] * 2, ["a", "b"] * 2)


def test_unknown_head_and_class_list():
    with pytest.raises(ConfigError, match="not in the class list"):
        encode_labels(["a", "b", "c"], class_names=["a", "b"])
    with pytest.raises(ConfigError, match="no labelled image: c"):  # zero images: the only count error
        encode_labels(["a", "b", "a"], class_names=["a", "b", "c"])
    with pytest.raises(ConfigError, match="unknown head"):
        fitting.make_head("transformer", 8, 2)


@pytest.mark.parametrize("holdout", [0.2, 0.0])
def test_a_class_with_one_image_is_fitted_and_predicted(shapes, tmp_path, holdout):
    """Long tails: one image of a class is enough to fit it; it is never held out and the
    held-out score says it does not cover it."""
    paths, labels, _ = shapes
    keep = [i for i, lab in enumerate(labels) if lab != "triangle"][::2] + [labels.index("triangle")]
    p, lab = [paths[i] for i in keep], [labels[i] for i in keep]
    with pytest.warns(fitting.RareClassWarning, match=r"triangle \(1\)"):
        clf = fit_classifier(p, lab, cache_dir=tmp_path, fit_size=96, flip=False, epochs=100,
                             holdout=holdout)
    assert clf.class_names == ["circle", "square", "triangle"]
    assert clf.meta["images_per_class"]["triangle"] == 1
    tri = load_image(p[-1])
    assert clf.predict([tri]).argmax(1)[0] == 2  # fitted on its one image (refit on all)
    if holdout:
        assert clf.meta["not_scored"] == ["triangle"] and "triangle" not in clf.meta["metrics"]
    else:
        assert "not_scored" not in clf.meta and "heldout_score" not in clf.meta


def test_rare_classes_are_never_held_out():
    y = np.eye(4, dtype=np.float32)[np.repeat([0, 1, 2, 3], [10, 10, 1, 1])]
    y[0, 3] = 1  # class 3 gets a second image, shared with a common class
    for seed in range(5):
        held = heldout_split(y, 0.5, seed=seed)
        assert not held[y[:, 2] > 0].any()  # a single-image class stays in training
        assert (y[~held] > 0).any(0).all()  # every class keeps a training positive


def test_heldout_split_is_stratified_and_seeded():
    y = np.eye(3, dtype=np.float32)[np.repeat([0, 1, 2], [10, 10, 2])]
    held = heldout_split(y, 0.2, seed=0)
    assert (held == heldout_split(y, 0.2, seed=0)).all()
    assert [int(held[y[:, c] > 0].sum()) for c in range(3)] == [2, 2, 1]
    assert not heldout_split(y, 0.0).any()


def test_feature_progress_counts_images_and_moves_often(shapes, tmp_path, monkeypatch):
    """Issue 22 item 9: the feature bar counts images (rate and ETA per image), and moves at
    least every 4 images on a CPU, not once per batch of 16."""
    import ewc_fo.models.feature_cache as fc

    bars = []

    class Recorder:
        def __init__(self, *a, **kw):
            self.kw, self.steps = kw, []
            bars.append(self)

        def update(self, n):
            self.steps.append(n)

        def close(self):
            pass

    monkeypatch.setattr(fc, "tqdm", Recorder)
    paths, labels, _ = shapes
    fit_classifier(paths, labels, cache_dir=tmp_path, verbose=True, **FIT)
    bar = next(b for b in bars if b.kw.get("desc") == "features")
    assert bar.kw["unit"] == "img" and bar.kw["total"] == len(paths)
    assert sum(bar.steps) == len(paths) and max(bar.steps) <= 4


def test_fit_progress_rises_to_its_total_through_features_and_finetuning(shapes, tmp_path):
    """Issue 22 item 9: ``progress(done, total)`` counts every image pass (features, then
    fine-tuning in passes of at most 4 on a CPU, then the held-out predictions), never goes
    back, and ends at its total; a fit whose features are all cached still ends at done."""
    paths, labels, _ = shapes
    sub = slice(None, None, 3)
    calls = []
    clf = fit_classifier(paths[sub], labels[sub], cache_dir=tmp_path, fit_size=64, finetune_blocks=1,
                         finetune_epochs=2, epochs=20, flip=True, progress=lambda d, t: calls.append((d, t)))
    n, held = clf.meta["n_images"], clf.meta["n_heldout"]
    total = n + 2 * (n - held) + held
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total
    assert max(b - a for a, b in zip([0] + done, done)) <= 4  # moves at least every 4 images
    cached = []
    fit_classifier(paths[sub], labels[sub], cache_dir=tmp_path, fit_size=64, flip=True, epochs=20,
                   progress=lambda d, t: cached.append((d, t)))
    assert cached and cached[-1][0] == cached[-1][1]


def test_finetune_in_passes_takes_the_same_step_as_whole_batches(shapes, tmp_path):
    """Passes of 4 whose gradients add up make the step one batch of 16 makes (frozen BatchNorm)."""
    import copy

    import torch

    paths, labels, _ = shapes
    sub = slice(None, None, 3)
    clf = fit_classifier(paths[sub], labels[sub], cache_dir=tmp_path, fit_size=64, epochs=5, holdout=0)
    groups = fitting.block_groups(clf.model)[-1:]
    y, _, _ = encode_labels(labels[sub], clf.class_names, False)
    params = []
    for pass_size in (16, 4):
        c = copy.deepcopy(clf)
        fitting._finetune(c, paths[sub], y, groups, size=64, epochs=1, lr=1e-3, batch_size=16, seed=0,
                          verbose=False, pass_size=pass_size)
        params.append(torch.cat([p.detach().flatten() for p in c.model.parameters()]))
    assert not torch.equal(params[0], torch.cat([p.detach().flatten() for p in clf.model.parameters()]))
    assert torch.allclose(params[0], params[1], atol=1e-6, rtol=1e-4)

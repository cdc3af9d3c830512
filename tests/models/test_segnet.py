"""The distilled segmentation model's core: deterministic training, checkpoints, labeling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from ewc_fo.engine.seg_labeler import SegModelLabeler
from ewc_fo.models.seg_checkpoint import load_seg_model, read_seg_metadata, save_seg_model
from ewc_fo.models.seg_train import SegTrainConfig, encode_images, train_segnet
from ewc_fo.models.segnet import TUNED_PREFIXES
from ewc_fo.runtime.errors import CheckpointError, ConfigError, UnknownClassError

CFG = SegTrainConfig(input_size=96, width=16, epochs=3, tune_epochs=1, batch_size=2)
CLASSES = ["cat", "coffee"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two real photos and rough masks of their subject (the darker/central part), twice, mirrored."""
    root = tmp_path_factory.mktemp("photos")
    paths, masks = [], []
    for k, name in enumerate(("chelsea", "coffee")):
        img = Image.fromarray(np.asarray(getattr(skimage.data, name)())).resize((128, 96))
        for flip in (False, True):
            im = img.transpose(Image.FLIP_LEFT_RIGHT) if flip else img
            p = root / f"{name}{int(flip)}.jpg"
            im.save(p)
            a = np.asarray(im.convert("L"), np.float32)
            m = np.zeros(a.shape, np.int64)
            m[24:80, 32:100] = k + 1  # the subject's box
            paths.append(str(p))
            masks.append(np.fliplr(m).copy() if flip else m)
    return paths, masks


def _weights(n):
    return [np.ones(len(CLASSES) + 1, np.float32) for _ in range(n)]


def _meta():
    return {"backbone": "efficientnet_lite0", "class_names": CLASSES, "input_size": CFG.input_size,
            "width": CFG.width, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "trainable_prefixes": list(TUNED_PREFIXES), "sample_ids": ["a", "b", "c", "d"]}


def test_training_is_deterministic_for_a_seed(photos):
    paths, masks = photos
    a = train_segnet(paths, masks, _weights(4), 2, CFG, threads=1)
    b = train_segnet(paths, masks, _weights(4), 2, CFG, threads=1)
    c = train_segnet(paths, masks, _weights(4), 2, SegTrainConfig(**{**CFG.__dict__, "seed": 1}), threads=1)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert a.losses == b.losses and len(a.losses) == CFG.epochs + CFG.tune_epochs
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa if k.startswith("decoder"))
    # the stride-32 stage was tuned, the frozen stages were not
    fresh = train_segnet(paths, masks, _weights(4), 2, SegTrainConfig(**{**CFG.__dict__, "tune_epochs": 0}),
                         threads=1).model.state_dict()
    assert not torch.equal(sa["encoder.high.0._project_conv.weight"], fresh["encoder.high.0._project_conv.weight"])
    assert torch.equal(sa["encoder.stem.0.weight"], fresh["encoder.stem.0.weight"])


def test_precomputed_features_give_the_same_model(photos):
    paths, masks = photos
    enc = encode_images(paths, CFG)
    a = train_segnet(paths, masks, _weights(4), 2, CFG, threads=1)
    b = train_segnet(paths[:3], masks[:3], _weights(3), 2, CFG, threads=1, encoded=None)
    c = train_segnet(paths[:3], masks[:3], _weights(3), 2, CFG, threads=1, encoded=enc.subset([0, 1, 2]))
    assert a.losses != b.losses
    assert b.losses == c.losses


def test_progress_counts_every_image_pass_and_changes_nothing(photos):
    """progress(done, total) in image passes: 4 encoded, then 4 per epoch; the model is the same."""
    paths, masks = photos
    seen = []
    a = train_segnet(paths, masks, _weights(4), 2, CFG, threads=1, progress=lambda d, t: seen.append((d, t)))
    total = 4 * (1 + CFG.epochs + CFG.tune_epochs)
    assert {t for _, t in seen} == {total}
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[:4] == [1, 2, 3, 4] and done[-1] == total
    b = train_segnet(paths, masks, _weights(4), 2, CFG, threads=1)
    assert a.losses == b.losses
    seen.clear()
    train_segnet(paths, masks, _weights(4), 2, CFG, threads=1, encoded=encode_images(paths, CFG),
                 progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (4 * (CFG.epochs + CFG.tune_epochs),) * 2  # nothing left to encode


def test_zero_weight_pixels_do_not_teach(photos):
    paths, masks = photos
    zero = [np.zeros(3, np.float32) for _ in range(4)]
    r = train_segnet(paths, masks, zero, 2, CFG, threads=1)
    assert all(v == 0 for v in r.losses)


def test_bad_training_input(photos):
    paths, masks = photos
    with pytest.raises(ConfigError, match="weight vectors"):
        train_segnet(paths, masks, _weights(3), 2, CFG)
    with pytest.raises(ConfigError, match="label 2"):
        train_segnet(paths, masks, [np.ones(2, np.float32)] * 4, 1, CFG)
    with pytest.raises(ConfigError, match="multiple of 32"):
        SegTrainConfig(input_size=100)


def test_checkpoint_round_trip_and_labeling(photos, tmp_path):
    paths, masks = photos
    r = train_segnet(paths, masks, _weights(4), 2, SegTrainConfig(**{**CFG.__dict__, "epochs": 8}), threads=1)
    path = save_seg_model(r.model, _meta(), tmp_path / "seg.safetensors")
    meta = read_seg_metadata(path)
    assert meta["class_names"] == CLASSES and meta["sample_ids"] == ["a", "b", "c", "d"]
    model, _ = load_seg_model(path)
    x = torch.randn(1, 3, 96, 96)
    assert torch.equal(model(x), r.model(x))

    lab = SegModelLabeler(str(path))
    img = np.asarray(Image.open(paths[0]).convert("RGB"))
    res = lab.run([img, img], [["cat"], ["coffee", "cat"]])
    assert res[0].label_map.shape == img.shape[:2]
    assert set(np.unique(res[0].label_map)) <= {0, 1}  # only the image's own class competes
    assert [c.class_name for c in res[1].classes] == ["coffee", "cat"]
    for r_ in res:
        assert 0 <= r_.confidence <= 1 and 0 <= r_.agreement <= 1
        assert r_.confidence == min(c.confidence for c in r_.classes)
        assert r_.fused.shape[0] == len(r_.classes) and r_.maps.shape[0] == 0
    # the subject's box is learnt: the cat mask overlaps it more than the rest of the image
    m = res[0].classes[0].mask
    assert m[24:80, 32:100].mean() > m.mean()
    out = lab.run([img], [["dog"]], errors="return")
    assert isinstance(out[0], UnknownClassError)
    # on a CPU it runs on ONNX Runtime, recorded as a setting; PyTorch gives the same masks
    assert lab.runtime == "onnxruntime" and lab.describe()["config"]["runtime"] == "onnxruntime"
    pt = SegModelLabeler(str(path), runtime="torch")
    assert pt.session is None and pt.describe()["config"]["runtime"] == "torch"
    got = pt.run([img, img], [["cat"], ["coffee", "cat"]])
    for a, b in zip(res, got):
        assert np.mean(a.label_map != b.label_map) < 1e-3
        assert abs(a.confidence - b.confidence) < 1e-3
    again = SegModelLabeler(str(path)).run([img, img], [["cat"], ["coffee", "cat"]])
    assert all(np.array_equal(a.label_map, b.label_map) and a.confidence == b.confidence
               and np.array_equal(a.fused, b.fused) for a, b in zip(res, again))  # deterministic
    with pytest.raises(ConfigError, match="runtime must be one of"):
        SegModelLabeler(str(path), runtime="tensorrt")


def test_bad_checkpoints(photos, tmp_path):
    paths, masks = photos
    r = train_segnet(paths, masks, _weights(4), 2, SegTrainConfig(**{**CFG.__dict__, "epochs": 1, "tune_epochs": 0}),
                     threads=1)
    path = save_seg_model(r.model, {**_meta(), "trainable_prefixes": ["decoder"]}, tmp_path / "m.safetensors")
    side = tmp_path / "m.safetensors.json"
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "class_names": CLASSES[::-1]}))
    with pytest.raises(CheckpointError, match="disagrees"):
        read_seg_metadata(path)
    from safetensors.torch import save_file

    clf = tmp_path / "clf.safetensors"  # what `ewc-fo fit` writes is refused by name
    save_file({"head.1.weight": torch.zeros(2, 4)}, str(clf),
              metadata={"ewc_fo": json.dumps({"format": "ewc_fo.fit/1", "class_names": CLASSES})})
    with pytest.raises(CheckpointError, match="classifier checkpoint"):
        read_seg_metadata(clf)
    side.unlink()
    assert read_seg_metadata(path)["class_names"] == CLASSES  # the header's own copy
    with pytest.raises(CheckpointError, match="not found"):
        read_seg_metadata(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}     ")
    with pytest.raises(CheckpointError):
        read_seg_metadata(bad)
    with pytest.raises(CheckpointError, match="input_size"):
        save_seg_model(r.model, {**_meta(), "input_size": 100}, tmp_path / "x.safetensors")

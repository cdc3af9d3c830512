"""Checkpoints: round trip, plain state dicts, and refusal of corrupt, mismatching and
unsafe files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ewc_fo.models.checkpoint import load_checkpoint, save_checkpoint, sidecar
from ewc_fo.models.fitting import fit_classifier
from ewc_fo.models.registry import load_classifier
from ewc_fo.runtime.errors import CheckpointError, ConfigError


def _images(root: Path, n: int = 8) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n):
        img = rng.integers(0, 60, (48, 48, 3), dtype=np.uint8)
        img[..., i % 2] += 150  # red or green
        p = root / f"{i}.png"
        from PIL import Image

        Image.fromarray(img).save(p)
        paths.append(str(p))
        labels.append(["red", "green"][i % 2])
    return paths, labels


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    paths, labels = _images(root)
    clf = fit_classifier(paths, labels, fit_size=64, input_size=96, epochs=20, cache_dir=root / "cache")
    return clf, paths


def test_round_trip(fitted, tmp_path):
    clf, paths = fitted
    out = save_checkpoint(clf, tmp_path / "m.safetensors")
    meta = json.loads(sidecar(out).read_text())
    assert meta["backbone"] == "efficientnet_lite0" and meta["weights"] == "partial"
    assert meta["class_names"] == clf.class_names and meta["fit_size"] == 64
    assert meta["input_size"] == 96 and "heldout_score" in meta and meta["ewc_fo_version"]
    # the head only: a few KB, not the backbone
    assert out.stat().st_size < 100_000
    back = load_classifier(out)
    assert back.class_names == clf.class_names and back.input_size == 96
    assert back.meta["fit_size"] == 64 and list(back.layers) == list(clf.layers)
    from ewc_fo.runtime.images import load_image

    imgs = [load_image(p) for p in paths[:3]]
    np.testing.assert_allclose(back.predict(imgs), clf.predict(imgs), atol=1e-5)
    # metadata in the safetensors header: the file alone still loads
    sidecar(out).unlink()
    assert load_checkpoint(out).class_names == clf.class_names


def test_full_weights_round_trip(tmp_path):
    paths, labels = _images(tmp_path)
    clf = fit_classifier(paths, labels, backbone="torchvision:resnet18", pretrained=False,
                         fit_size=64, epochs=5, cache_dir=False)
    out = save_checkpoint(clf, tmp_path / "r.safetensors")
    back = load_checkpoint(out)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back.model(x), clf.model(x))


def _rewrite(out: Path, meta: dict, header: bool = True) -> None:
    """Replace the checkpoint's metadata: in the sidecar, and (``header``) inside the file too."""
    sidecar(out).write_text(json.dumps(meta))
    if header:
        from safetensors.torch import load_file, save_file

        save_file(load_file(str(out)), str(out), metadata={"ewc_fo": json.dumps(meta)})


def test_mismatches(fitted, tmp_path):
    clf, _ = fitted
    out = save_checkpoint(clf, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="class count mismatch"):
        load_checkpoint(out, class_names=["a", "b", "c"])
    with pytest.raises(CheckpointError, match="backbone"):
        load_checkpoint(out, backbone="timm:resnet18")
    # metadata claiming another backbone than the weights were fitted on
    meta = json.loads(sidecar(out).read_text())
    meta["backbone"] = "torchvision:resnet18"
    meta["pretrained"] = False
    _rewrite(out, meta)
    with pytest.raises(CheckpointError, match="does not fit backbone"):
        load_checkpoint(out)
    meta["backbone"] = "efficientnet_lite0"
    meta["pretrained"] = True
    meta["class_names"] = ["a", "b", "c"]
    _rewrite(out, meta)
    with pytest.raises(CheckpointError, match="class count mismatch"):
        load_checkpoint(out)
    del meta["backbone"]
    _rewrite(out, meta)
    with pytest.raises(CheckpointError, match="lacks backbone"):
        load_checkpoint(out)


@pytest.mark.parametrize("field, value, message", [
    ("class_names", 7, "class_names must be a list of non-empty strings"),
    ("class_names", ["red", ""], "class_names must be a list of non-empty strings"),
    ("class_names", ["red", "red"], "lists red twice"),
    ("input_size", 0, "input_size must be between 32 and 2048"),
    ("input_size", -5, "input_size must be between 32 and 2048"),
    ("input_size", 20000, "input_size must be between 32 and 2048"),
    ("input_size", "96", "input_size must be a whole number"),
    ("fit_size", 1.5, "fit_size must be a whole number"),
    ("mean", "x", "mean must be 3 finite numbers"),
    ("mean", [0.5, 0.5, float("nan")], "mean must be 3 finite numbers"),
    ("std", [0.2, 0.0, 0.2], "std must be 3 finite numbers above 0"),
    ("multilabel", "no", "multilabel must be true or false"),
    ("head", "deep", "head must be 'linear' or 'mlp'"),
    ("format", "ewc_fo.fit/9", "format 'ewc_fo.fit/9'"),
])
def test_bad_metadata_is_refused_with_a_clear_error(fitted, tmp_path, field, value, message):
    """Issue #14: an edited sidecar used to end in a traceback (class_names: 7) or load
    nonsense (input_size 20000, mean "x"); every field is now checked."""
    from ewc_fo.models.checkpoint_meta import read_metadata

    clf, _ = fitted
    out = save_checkpoint(clf, tmp_path / "m.safetensors")
    meta = json.loads(sidecar(out).read_text())
    meta[field] = value
    _rewrite(out, meta)
    for load in (load_checkpoint, read_metadata):
        with pytest.raises(CheckpointError, match=message) as e:
            load(out)
        assert "\n" not in str(e.value)


def test_sidecar_must_agree_with_the_file(fitted, tmp_path):
    """A sidecar with the classes swapped used to load, naming every mask wrongly."""
    from ewc_fo.models.checkpoint_meta import read_metadata

    clf, _ = fitted
    out = save_checkpoint(clf, tmp_path / "m.safetensors")
    meta = json.loads(sidecar(out).read_text())
    meta["class_names"] = meta["class_names"][::-1]
    _rewrite(out, meta, header=False)
    for load in (load_checkpoint, read_metadata):
        with pytest.raises(CheckpointError, match="disagrees with the metadata inside the file on class_names"):
            load(out)
    sidecar(out).unlink()  # the file's own metadata still loads
    assert load_checkpoint(out).class_names == clf.class_names
    assert read_metadata(out)["class_names"] == clf.class_names


def test_corrupt_files(fitted, tmp_path):
    clf, _ = fitted
    out = save_checkpoint(clf, tmp_path / "m.safetensors")
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(out)
    sidecar(out).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt checkpoint metadata"):
        load_checkpoint(out)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(junk, class_names=["a", "b"])
    torch.save({"w": torch.zeros(3)}, tmp_path / "t.pt")
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "t.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "trunc.pt", class_names=["a", "b"])
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_plain_state_dict(tmp_path):
    import torchvision

    net = torchvision.models.resnet18(num_classes=3)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "user.pth")
    with pytest.raises(CheckpointError, match="missing metadata"):
        load_checkpoint(tmp_path / "user.pth")
    with pytest.raises(CheckpointError, match="missing metadata"):
        load_checkpoint(tmp_path / "user.pth", class_names=["a", "b", "c"])
    clf = load_checkpoint(tmp_path / "user.pth", class_names=["a", "b", "c"],
                          backbone="torchvision:resnet18")
    assert list(clf.layers) == ["layer4", "layer3"]
    x = torch.randn(1, 3, 64, 64)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(clf.model(x), net(x))
    with pytest.raises(CheckpointError, match="class count mismatch"):
        load_checkpoint(tmp_path / "user.pth", class_names=["a", "b"], backbone="torchvision:resnet18")
    # the user's own module
    mine = torchvision.models.resnet18(num_classes=3)
    assert load_checkpoint(tmp_path / "user.pth", class_names="abc", model=mine).model is mine
    with pytest.raises(ConfigError):
        load_checkpoint(tmp_path / "user.pth", class_names="abc", backbone="nope:x")


class Evil:
    """Unpickling this writes a marker file: what a malicious checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("kind", ["torch", "pickle"])
def test_unsafe_pickle_is_refused(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"weight": torch.zeros(2), "x": Evil(marker)}
    if kind == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="can run any code") as e:
        load_checkpoint(path, class_names=["a", "b"])
    assert "allow_pickle=True" in str(e.value) and "--trust-checkpoint" in str(e.value)
    with pytest.raises(CheckpointError, match="can run any code"):
        load_classifier(path)
    assert not marker.exists()
    # explicitly trusted: it is unpickled (and the marker appears, as the user accepted)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, class_names=["a", "b"], allow_pickle=True, backbone="torchvision:resnet18")
    assert marker.exists()

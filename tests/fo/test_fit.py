"""The FiftyOne wrapper and ``ewc-fo fit``: label type detection, bad fields, checkpoint."""

from __future__ import annotations

import json
import uuid

import fiftyone as fo
import pytest

from ewc_fo.cli import main
from ewc_fo.fo.fit import fit, read_labels
from ewc_fo.models.registry import load_classifier
from ewc_fo.runtime.errors import ConfigError
from tests.models.test_fitting import make_shapes

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
    # the dataset remembers it: label and the compute form default to it (issue 22 item 5)
    from ewc_fo.fo.fit import default_classifier, fitted_classifier

    rec = fitted_classifier(fo.load_dataset(dataset.name))
    assert rec["path"] == str(out) and rec["label_field"] == "single"
    path, line = default_classifier(dataset)
    assert path == str(out) and str(out) in line and "'single'" in line


def test_label_says_which_classifier_by_default(dataset, tmp_path, capsys):
    from ewc_fo.fo.fit import INFO_KEY, default_classifier

    dataset.info = {}
    dataset.save()
    assert default_classifier(dataset)[0] == "efficientnet_lite0"
    assert main(["label", dataset.name, "--label-field", "boxes"]) == 2  # refused after saying which
    assert "classifier: efficientnet_lite0 (ImageNet; no classifier fitted" in capsys.readouterr().out
    out = tmp_path / "c.safetensors"
    fit(dataset, "single", out=out, cache_dir=tmp_path / "cache", **SMALL)
    assert main(["label", dataset.name, "--label-field", "boxes"]) == 2
    assert f"classifier: {out} (fitted on this dataset's 'single'" in capsys.readouterr().out
    out.unlink()  # the file is gone: back to ImageNet's, not an error
    assert default_classifier(dataset)[0] == "efficientnet_lite0"
    assert INFO_KEY in dataset.info


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


def test_cli_fits_a_class_with_a_single_image(dataset, tmp_path, capsys):
    """A long tail: one triangle. It is fitted and predicted, left out of the held-out split and
    score with a warning; the checkpoint is readable by others (umask, not 0600)."""
    ds = dataset.clone()
    try:
        ds.match(fo.ViewField("single.label") == "triangle").skip(1).set_field("single", None).save()
        assert ds.count_values("single.label")["triangle"] == 1
        out = tmp_path / "rare.safetensors"
        rc = main(["fit", ds.name, "--label-field", "single", "--out", str(out), "--fit-size", "64",
                   "--no-flip", "--epochs", "100", "--holdout", "0.5", "--cache-dir", str(tmp_path / "c")])
        assert rc == 0
        text = capsys.readouterr().out
        assert "never held out (a single image each): triangle (1)" in text
        assert "not in the held-out score (no held-out image): triangle" in text
        again = main(["fit", ds.name, "--label-field", "single", "--out", str(out), "--fit-size", "64",
                      "--no-flip", "--epochs", "100", "--holdout", "0.5", "--cache-dir", str(tmp_path / "c")])
        cap = capsys.readouterr()
        assert again == 0 and "0 computed" in cap.out
        assert "features" not in cap.err  # everything cached: no empty progress bar
        meta = json.loads((tmp_path / "rare.safetensors.json").read_text())
        assert meta["not_scored"] == ["triangle"] and meta["images_per_class"]["triangle"] == 1
        clf = load_classifier(out)
        assert clf.class_names == ["circle", "square", "triangle"]
        from ewc_fo.runtime.images import load_image

        tri = ds.match(fo.ViewField("single.label") == "triangle").first().filepath
        assert clf.predict([load_image(tri)]).argmax(1)[0] == 2
        mask = 0o666 & ~_umask()
        assert out.stat().st_mode & 0o777 == mask and (out.stat().st_mode & 0o044)
    finally:
        ds.delete()


def _umask() -> int:
    import os

    m = os.umask(0)
    os.umask(m)
    return m


def test_cli_selection_without_a_saved_view(dataset, tmp_path, capsys):
    ds = dataset.clone()
    ds.persistent = True
    try:
        ds.take(4, seed=1).tag_samples("pick")
        out = tmp_path / "sel.safetensors"
        common = ["--label-field", "multi", "--out", str(out), "--fit-size", "64", "--no-flip",
                  "--epochs", "20", "--cache-dir", str(tmp_path / "c")]
        assert main(["fit", ds.name, *common, "--tags", "pick", "--save-view", "picked"]) == 0
        assert "fitted" in capsys.readouterr().out
        assert json.loads((tmp_path / "sel.safetensors.json").read_text())["n_images"] == 4
        assert len(ds.load_saved_view("picked")) == 4
        # the same selection again is fine; another under that name is refused
        assert main(["fit", ds.name, *common, "--tags", "pick", "--save-view", "picked"]) == 0
        assert main(["fit", ds.name, *common, "--limit", "3", "--save-view", "picked"]) == 2
        assert "already has a different saved view" in capsys.readouterr().err
        assert main(["fit", ds.name, *common, "--with-classes", "square", "--limit", "4"]) == 0
        assert json.loads((tmp_path / "sel.safetensors.json").read_text())["n_images"] == 4
        assert main(["fit", ds.name, *common, "--tags", "nope"]) == 2
        assert "matches no samples" in capsys.readouterr().err
        assert main(["fit", ds.name, *common, "--limit", "0"]) == 2
    finally:
        ds.delete()

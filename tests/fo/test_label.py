"""Integration tests of ``ewc_fo.label`` on a real (temporary) FiftyOne database."""

from __future__ import annotations

import os

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

import ewc_fo
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.fo.review.views import TRIAGE, triage_view
from ewc_fo.models.registry import load_classifier
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import create_segmenter

from ._data import make_dataset, small_photo

FAST = EWCConfig(explain_size=160)


@pytest.fixture(scope="module")
def clf():
    return load_classifier()


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, clf):
    root = tmp_path_factory.mktemp("imgs")
    ds = make_dataset(str(root), "label-fields", n=4)
    summary = ewc_fo.label(ds, "labels", classifier=clf, segmenter=create_segmenter("grabcut"),
                           config=FAST, batch_size=2, progress_bar=False,
                           output_dir=str(tmp_path_factory.mktemp("out")))
    return ds, summary


def test_fields_and_types(labeled):
    ds, summary = labeled
    assert summary.succeeded == 4 and not summary.errors
    schema = ds.get_field_schema()
    assert schema["ewc_mask"].document_type is fo.Segmentation
    assert schema["ewc_instances"].document_type is fo.Detections
    assert isinstance(schema["ewc_confidence"], fo.FloatField)
    assert schema["ewc_heatmap_fused"].document_type is fo.Heatmap
    targets = ds.mask_targets["ewc_mask"]
    assert set(targets.values()) == {"tabby", "espresso", "missile", "tripod"}
    for s in ds:
        img = Image.open(s.filepath)
        mask = np.asarray(Image.open(s.ewc_mask.mask_path))
        assert mask.shape == (img.height, img.width)
        assert set(np.unique(mask)) <= {0} | set(targets)
        label = s.labels.classifications[0].label
        assert any(targets[v] == label for v in np.unique(mask) if v), "mask holds the sample's class"
        assert 0.0 <= s.ewc_confidence <= 1.0 and 0.0 <= s.ewc_agreement <= 1.0
        assert set(s.ewc_scores) == {e for e in FAST.explainers}
        weights = [d["weight"] for d in s.ewc_scores.values()]
        assert abs(sum(weights) - 1) < 1e-6
        for d in s.ewc_instances.detections:
            assert d.label == label and 0 <= d.confidence <= 1 and d.mask.dtype == bool
        hm = np.asarray(Image.open(s.ewc_heatmap_fused.map_path))
        assert hm.dtype == np.uint8 and hm.max() == 255
        z = np.load(s.ewc_maps_path)
        assert z["maps"].shape[:2] == (len(FAST.explainers), 1)
        assert s.ewc_error is None


def test_run_is_recorded(labeled):
    ds, _ = labeled
    info = ds.get_run_info("ewc").config.serialize()
    assert info["status"] == "complete"
    assert info["method"]["explainers"] == list(FAST.explainers)
    assert info["segmenter"]["name"] == "grabcut"
    assert "torch" in info["versions"]


def test_triage_views_order(labeled):
    ds, summary = labeled
    assert set(summary.views) == {f"ewc-{k.replace('_', '-')}" for k in TRIAGE}
    conf = ds.load_saved_view("ewc-low-confidence").values("ewc_confidence")
    assert conf == sorted(conf) and len(conf) == 4
    agree = triage_view(ds, "low_agreement").values("ewc_agreement")
    assert agree == sorted(agree)
    assert len(ds.load_saved_view("ewc-failed")) == 0


def test_rerun_needs_overwrite_and_user_fields_are_safe(labeled, clf, tmp_path):
    ds, _ = labeled
    with pytest.raises(ConfigError, match="overwrite"):
        ewc_fo.label(ds, "labels", classifier=clf, segmenter=create_segmenter("grabcut"),
                     config=FAST, progress_bar=False)
    user = ds.clone("label-user-fields")
    user.add_sample_field("mine_confidence", fo.FloatField)
    user.set_values("mine_confidence", [0.5] * len(user))
    with pytest.raises(ConfigError, match="never overwrites"):
        ewc_fo.label(user, "labels", prefix="mine", classifier=clf,
                     segmenter=create_segmenter("grabcut"), config=FAST, progress_bar=False)
    assert user.values("mine_confidence") == [0.5] * len(user)


def test_overwrite_redoes_the_run(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "label-overwrite", n=2)
    kw = dict(classifier=clf, segmenter=create_segmenter("grabcut"), config=FAST,
              progress_bar=False, output_dir=str(tmp_path / "o"))
    ewc_fo.label(ds, "labels", **kw)
    first = ds.values("ewc_confidence")
    s = ewc_fo.label(ds, "labels", overwrite=True, **kw)
    assert s.succeeded == 2 and s.skipped_done == 0
    assert ds.values("ewc_confidence") == first  # deterministic


def test_bad_view_and_fields(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "label-bad", n=1, multilabel=False)
    kw = dict(classifier=clf, segmenter=create_segmenter("grabcut"), config=FAST, progress_bar=False)
    with pytest.raises(ConfigError, match="empty"):
        ewc_fo.label(ds.limit(0), "labels", **kw)
    with pytest.raises(ConfigError, match="not found"):
        ewc_fo.label(ds, "nope", **kw)
    ds.add_sample_field("score", fo.FloatField)
    with pytest.raises(ConfigError, match="expected fo.Classification"):
        ewc_fo.label(ds, "score", **kw)
    s = ewc_fo.label(ds, "labels", **kw)  # single-label Classification works
    assert s.succeeded == 1


def test_bad_samples_get_errors_and_the_run_goes_on(tmp_path, clf):
    root = tmp_path / "bad"
    root.mkdir()
    photo = small_photo("chelsea")
    photo.save(root / "ok.jpg")
    (root / "truncated.jpg").write_bytes((root / "ok.jpg").read_bytes()[:600])
    photo.convert("L").save(root / "gray.png")
    photo.convert("RGBA").save(root / "rgba.png")
    Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257).save(root / "sixteen.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    photo.save(root / "exif.jpg", exif=exif)
    tabby = fo.Classifications(classifications=[fo.Classification(label="tabby")])
    samples = [fo.Sample(filepath=str(root / f), labels=tabby.copy()) for f in
               ("ok.jpg", "truncated.jpg", "gray.png", "rgba.png", "sixteen.png", "exif.jpg")]
    samples.append(fo.Sample(filepath=str(root / "missing.jpg"), labels=tabby.copy()))
    samples.append(fo.Sample(filepath=str(root / "ok.jpg")))  # no label
    samples.append(fo.Sample(filepath=str(root / "ok.jpg"), labels=fo.Classifications(
        classifications=[fo.Classification(label="not-a-class")])))
    ds = fo.Dataset("label-bad-samples")
    ds.add_samples(samples)
    # two decoding worker processes: bad files come back from them as their errors
    s = ewc_fo.label(ds, "labels", classifier=clf, segmenter=create_segmenter("grabcut"),
                     config=FAST, batch_size=3, progress_bar=False, loader_workers=2)
    assert s.succeeded == 5
    assert dict(s.errors) == {"unreadable_image": 2, "no_label": 1, "unknown_class": 1}
    kinds = dict(zip(ds.values("filepath"), ds.values("ewc_error_kind")))
    assert kinds[str(root / "truncated.jpg")] == "unreadable_image"
    assert kinds[str(root / "missing.jpg")] == "unreadable_image"
    rotated = ds.match(fo.ViewField("filepath").ends_with("exif.jpg")).first()
    mask = np.asarray(Image.open(rotated.ewc_mask.mask_path))
    assert mask.shape == (photo.width, photo.height)  # displayed (rotated) orientation
    failed = triage_view(ds, "failed").values("ewc_error")
    assert len(failed) == 4 and all(failed)
    assert "no image-level label" in str(s) or s.errors["no_label"] == 1


def test_progress_callback_and_resume_in_process(tmp_path, clf):
    ds = make_dataset(str(tmp_path / "i"), "label-progress", n=5)
    calls = []
    kw = dict(classifier=clf, segmenter=create_segmenter("grabcut"), config=FAST,
              progress_bar=False, batch_size=2)
    s1 = ewc_fo.label(ds, "labels", max_samples=2, progress=lambda d, t: calls.append((d, t)), **kw)
    assert s1.processed == 2 and calls == [(1, 2), (2, 2)]  # per image, not once per batch of 2
    assert ds.get_run_info("ewc").config.serialize()["status"] == "running"
    calls.clear()
    s2 = ewc_fo.label(ds, "labels", progress=lambda d, t: calls.append((d, t)), **kw)
    assert s2.skipped_done == 2 and s2.succeeded == 3
    assert calls == [(1, 3), (2, 3), (3, 3)]  # what is left to do, rising one image at a time
    assert len(ds.exists("ewc_confidence")) == 5
    assert os.path.isdir(s2.output_dir)


def test_bar_moves_per_image_and_inside_a_batch(tmp_path, clf, monkeypatch):
    """Issue 22 item 9: the label bar moves with each finished stage of a batch (held below
    the batch's end), then per image as its files are written; it never goes back and ends
    at the count of images; the stage shows beside it."""
    import ewc_fo.fo.runs.label as run_label

    steps, stages = [], []

    class Bar:
        def update(self, n):
            steps.append(n)

        def set_postfix(self, stage=None, refresh=False):
            stages.append(stage)

        def close(self):
            pass

    monkeypatch.setattr(run_label, "make_bar", lambda total, enabled: Bar())
    ds = make_dataset(str(tmp_path / "i"), "label-bar", n=2)
    calls = []
    ewc_fo.label(ds, "labels", classifier=clf, segmenter=create_segmenter("grabcut"), config=FAST,
                 batch_size=2, output_dir=str(tmp_path / "o"), progress=lambda d, t: calls.append((d, t)))
    assert all(n > 0 for n in steps) and sum(steps) == pytest.approx(2.0)
    assert len(steps) > 3 and steps[0] < 1  # moved before the batch's first image was written
    assert "explain" in stages and "segment_fused" in stages and stages[-1] == "written"
    assert calls == [(1, 2), (2, 2)]  # the callback stays per whole image

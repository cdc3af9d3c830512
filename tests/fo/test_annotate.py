"""Corrections: send masks to a real Label Studio server, change one there as a person would,
load it back, and check that export writes the corrected mask.

The server runs from its own virtual environment (scripts/setup_label_studio.sh) on
127.0.0.1, a free port, with its own data directory, user and API token; it is stopped at the
end of the module. Without that environment the server test is skipped with the reason.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
import requests
from fiftyone import ViewField as F
from PIL import Image

from ewc_fo.cli import main as cli
from ewc_fo.fo.io.export import export_voc
from ewc_fo.fo.review import annotate as ann
from ewc_fo.fo.runs.class_labels import backfill_class_labels, class_confidence_labels
from ewc_fo.runtime.errors import ConfigError
from tests._mongod import free_port
from tests.fo._data import make_dataset

ROOT = Path(__file__).resolve().parents[2]
LS_VENV = Path(os.environ.get("EWC_LABEL_STUDIO_VENV", ROOT / ".cache" / "label-studio-venv"))
LS_BIN = LS_VENV / "bin" / "label-studio"
TARGETS = {0: "background", 1: "cat", 2: "dog"}


def _masks(h: int, w: int, k: int) -> np.ndarray:
    """A pseudo-mask with a cat box and a dog box (disjoint), shifted by sample index."""
    m = np.zeros((h, w), np.uint8)
    m[10 + k : 40 + k, 10:50] = 1
    m[60:90, 90 + k : 140] = 2
    return m


@pytest.fixture
def run_ds(tmp_path):
    """A dataset that looks like a finished run: P_mask (+ stale instances), confidence, tags."""
    name = f"ewc-annotate-{secrets.token_hex(4)}"
    ds = make_dataset(str(tmp_path / "img"), name, n=3)
    (tmp_path / "masks").mkdir()
    for k, s in enumerate(ds.iter_samples(autosave=True)):
        w, h = Image.open(s.filepath).size
        path = str(tmp_path / "masks" / f"{k}.png")
        Image.fromarray(_masks(h, w, k)).save(path)
        s["ewc_mask"] = fo.Segmentation(mask_path=path)
        s["ewc_instances"] = fo.Detections(
            detections=[fo.Detection(label="cat", bounding_box=[0.05, 0.05, 0.3, 0.3],
                                     mask=np.ones((8, 8), bool), confidence=0.9)]
        )
        s["ewc_confidence"] = [0.2, 0.9, 0.5][k]
        s["ewc_class_confidence"] = {"cat": [0.2, 0.9, 0.5][k], "dog": 0.6}
        if k == 1:
            s.tags.append("ewc:reject")
    ds.mask_targets = {"ewc_mask": dict(TARGETS)}
    ds.save()
    yield ds
    ds.delete()


def _voc_class_map(out: Path, filepath: str) -> np.ndarray:
    """The exported class map in the run's ids (TARGETS), whatever ids the export chose
    (VOC's standard ids for VOC classes such as cat and dog): line i of class_names.txt is id i."""
    names = (out / "class_names.txt").read_text().splitlines()
    to_run = {name: k for k, name in TARGETS.items()}
    lut = np.array([to_run.get(n, 99) for n in names] + [99] * (256 - len(names)), np.uint8)
    with Image.open(out / "SegmentationClass" / (Path(filepath).stem + ".png")) as im:
        return lut[np.asarray(im)]


# ---------------------------------------------------------------------------- no server


def test_candidates_rejected_or_low_confidence(run_ds):
    both = ann.correction_candidates(run_ds, max_confidence=0.3)
    assert both.values("ewc_confidence") == [0.2, 0.9]  # low first, then the rejected one
    assert ann.correction_candidates(run_ds).values("ewc_confidence") == [0.9]
    assert ann.correction_candidates(run_ds, max_confidence=0.6, rejected=False).values("ewc_confidence") == [0.2, 0.5]
    with pytest.raises(ConfigError, match="nothing selects"):
        ann.correction_candidates(run_ds, rejected=False)
    with pytest.raises(ConfigError, match="prefix"):
        ann.correction_candidates(run_ds, "other")


def test_accepted_masks_stay_out_unless_asked(run_ds):
    """A reviewer's accept outweighs low confidence; a reject always goes (issue 22, item 1)."""
    low = run_ds.match(F("ewc_confidence") == 0.2).first()
    low.tags.append("ewc:reviewed")
    low.save()
    view = ann.correction_candidates(run_ds, max_confidence=0.6)
    assert view.values("ewc_confidence") == [0.5, 0.9]  # the accepted 0.2 is out, the rejected 0.9 in
    assert ann.selection_counts(view) == {"rejected": 1, "accepted": 0, "other": 1}
    both = ann.correction_candidates(run_ds, max_confidence=0.6, include_accepted=True)
    assert both.values("ewc_confidence") == [0.2, 0.5, 0.9]
    assert ann.selection_counts(both) == {"rejected": 1, "accepted": 1, "other": 1}
    assert ann.describe_selection(ann.selection_counts(both)) == "1 rejected, 1 unreviewed, 1 accepted"
    assert sorted(ann.without_accepted(run_ds).values("ewc_confidence")) == [0.5, 0.9]


def test_cli_send_summary_counts_and_skips_accepted(run_ds, monkeypatch, capsys):
    low = run_ds.match(F("ewc_confidence") == 0.2).first()
    low.tags.append("ewc:reviewed")
    low.save()
    sent = {}
    monkeypatch.setattr(ann, "send_for_correction", lambda view, *a, **k: sent.update(c=view.values("ewc_confidence")))
    assert cli(["annotate", "send", run_ds.name, "--anno-key", "k", "--max-confidence", "0.6"]) == 0
    assert sent["c"] == [0.5, 0.9]
    assert "sent 2 sample(s) (1 rejected, 1 unreviewed, 0 accepted)" in capsys.readouterr().out
    assert cli(["annotate", "send", run_ds.name, "--anno-key", "k", "--all"]) == 0
    assert sorted(sent["c"]) == [0.5, 0.9]
    assert cli(["annotate", "send", run_ds.name, "--anno-key", "k", "--all", "--include-accepted"]) == 0
    assert sorted(sent["c"]) == [0.2, 0.5, 0.9]
    assert "1 accepted" in capsys.readouterr().out


def test_send_to_unreachable_server_leaves_nothing_behind(run_ds):
    before = run_ds.values("ewc_mask.mask_path")
    with pytest.raises(ConfigError, match="could not send"):
        ann.send_for_correction(run_ds, "fix1", url=f"http://127.0.0.1:{free_port()}", api_key="x")
    assert run_ds.list_annotation_runs() == []
    assert run_ds.values("ewc_mask.mask_path") == before
    with pytest.raises(ConfigError, match="no annotation run"):
        ann.load_corrections(run_ds, "fix1")
    assert cli(["annotate", "load", run_ds.name, "--anno-key", "fix1", "--max-confidence", "0.2"]) == 2
    assert cli(["annotate", "send", run_ds.name, "--anno-key", "fix1", "--all", "--no-rejected"]) == 2


def test_export_prefers_corrected_mask(run_ds, tmp_path):
    s = run_ds.first()
    w, h = Image.open(s.filepath).size
    fixed = np.zeros((h, w), np.uint8)
    fixed[5:20, 5:20] = 2  # a person says: a small dog, no cat
    path = str(tmp_path / "fixed.png")
    Image.fromarray(fixed).save(path)
    s["ewc_mask_corrected"] = fo.Segmentation(mask_path=path)
    s.save()
    # min_confidence would void this whole image (confidence 0.2) were it not corrected
    res = export_voc(run_ds, tmp_path / "voc", min_confidence=0.3)
    assert res.num_images == 2  # the rejected sample is left out
    np.testing.assert_array_equal(_voc_class_map(tmp_path / "voc", s.filepath), fixed)
    third = run_ds.skip(2).first()
    w3, h3 = Image.open(third.filepath).size
    np.testing.assert_array_equal(_voc_class_map(tmp_path / "voc", third.filepath), _masks(h3, w3, 2))
    with Image.open(tmp_path / "voc" / "SegmentationObject" / (Path(s.filepath).stem + ".png")) as im:
        assert set(np.unique(np.asarray(im)).tolist()) == {0, 1}  # one object: the dog, not the stale cat


def test_regions_survive_fiftyone_label_studio_encoding(run_ds):
    """What FiftyOne uploads as pre-annotation, read back as Label Studio returns it, is the
    pseudo-mask pixel for pixel (FiftyOne's renderer truncates box corners: 60/107*107 -> 59)."""
    from fiftyone.utils.labelstudio import (
        export_label_to_label_studio,
        import_label_studio_annotation,
    )

    from ewc_fo.fo.io.export import paste_instance

    ann.write_edit_regions(run_ds)
    for k, s in enumerate(run_ds.iter_samples()):
        w, h = Image.open(s.filepath).size
        full = {"from_name": "ewc_mask_edit", "to_name": "image", "original_width": w, "original_height": h}
        back = np.zeros((h, w), np.uint8)
        for r in export_label_to_label_studio(s.ewc_mask_edit, label_type="instances", full_result=full):
            seg = import_label_studio_annotation(r)[1]
            (det,) = seg.to_detections({255: seg.label}).detections
            back[paste_instance(det, w, h)] = {"cat": 1, "dog": 2}[det.label]
        np.testing.assert_array_equal(back, _masks(h, w, k))


def test_class_confidence_labels(run_ds):
    labels = class_confidence_labels({"cat": 0.25, "dog": float("nan")})
    assert [(c.label, c.confidence) for c in labels.classifications] == [("cat", 0.25), ("dog", None)]
    assert backfill_class_labels(run_ds) == 3
    low_cats = run_ds.filter_labels("ewc_classes", (fo.ViewField("label") == "cat") & (fo.ViewField("confidence") < 0.6))
    assert low_cats.values("ewc_confidence") == [0.2, 0.5]


# ---------------------------------------------------------------------------- real server


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A Label Studio server on 127.0.0.1 with a fresh data dir, user and legacy API token."""
    if not os.access(LS_BIN, os.X_OK):
        pytest.skip(f"Label Studio not installed in {LS_VENV}: run bash scripts/setup_label_studio.sh")
    data = tmp_path_factory.mktemp("label-studio")
    port, token = free_port(), secrets.token_hex(20)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "HOST")}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data), DJANGO_DB="sqlite", LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_USERNAME="tester@example.com", LABEL_STUDIO_PASSWORD=secrets.token_hex(12),
        LABEL_STUDIO_USER_TOKEN=token, COLLECT_ANALYTICS="false", LATEST_VERSION_CHECK="false",
    )
    log = open(data / "server.log", "w")
    proc = subprocess.Popen(
        [str(LS_BIN), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # first start migrates a new database: slow on a busy machine
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Label Studio exited ({proc.returncode}): {(data / 'server.log').read_text()[-2000:]}")
            try:
                r = requests.get(f"{url}/api/projects", headers={"Authorization": f"Token {token}"}, timeout=5)
                if r.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Label Studio did not start: {(data / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield url, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _edit_as_a_person(url: str, token: str, task_id: int, cat: np.ndarray) -> None:
    """Submit an annotation that keeps the pre-annotated dog and replaces the cat brush."""
    from label_studio_sdk.converter import brush

    h = {"Authorization": f"Token {token}"}
    task = requests.get(f"{url}/api/tasks/{task_id}", headers=h, timeout=30).json()
    (pred,) = task["predictions"]
    result = []
    for r in pred["result"]:
        r = dict(r)
        if r["value"]["brushlabels"] == ["cat"]:
            r["value"] = dict(r["value"], rle=brush.mask2rle(cat.astype(np.uint8) * 255))
        result.append(r)
    assert {tuple(r["value"]["brushlabels"]) for r in result} == {("cat",), ("dog",)}
    resp = requests.post(f"{url}/api/tasks/{task_id}/annotations", headers=h, json={"result": result}, timeout=30)
    assert resp.status_code == 201, resp.text


def test_round_trip_label_studio_then_export(run_ds, label_studio, tmp_path, capsys):
    url, token = label_studio
    name = run_ds.name
    creds = ["--url", url, "--api-key", token]
    assert cli(["annotate", "send", name, "--anno-key", "fix", "--max-confidence", "0.3", *creds]) == 0
    assert "sent 2 sample(s)" in capsys.readouterr().out
    results = run_ds.load_annotation_results("fix", url=url, api_key=token)
    by_sample = {sid: tid for tid, sid in results.uploaded_tasks.items()}
    assert len(by_sample) == 2

    target = run_ds.match_tags("ewc:reject").first()  # the rejected one gets fixed
    w, h = Image.open(target.filepath).size
    cat = np.zeros((h, w), bool)
    cat[20:70, 30:80] = True  # the person redraws the cat bigger and elsewhere
    _edit_as_a_person(url, token, by_sample[target.id], cat)

    assert cli(["annotate", "load", name, "--anno-key", "fix", *creds]) == 0
    assert "loaded 1 corrected mask(s)" in capsys.readouterr().out
    run_ds.reload()
    expected = _masks(h, w, 1)
    expected[expected == 1] = 0
    expected[cat] = 1
    target = run_ds[target.id]
    got = target.ewc_mask_corrected.get_mask()
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, target.ewc_mask.get_mask())
    assert "ewc:reviewed" in target.tags and "ewc:reject" not in target.tags
    untouched = run_ds.match(fo.ViewField("ewc_confidence") == 0.2).first()
    assert untouched.ewc_mask_corrected is None  # sent, but nobody submitted it
    assert run_ds.mask_targets["ewc_mask_corrected"] == TARGETS

    out = tmp_path / "voc"
    assert cli(["export", name, "--format", "voc", "--out", str(out)]) == 0
    np.testing.assert_array_equal(_voc_class_map(out, target.filepath), expected)

    # one open round per sample; a second round starts from the person's fix
    with pytest.raises(ConfigError, match="still out in annotation run 'fix'"):
        ann.send_for_correction(run_ds.select(target.id), "fix2", url=url, api_key=token)
    assert cli(["annotate", "load", name, "--anno-key", "fix", "--cleanup", *creds]) == 0
    assert run_ds.list_annotation_runs() == []
    ann.send_for_correction(run_ds.select(target.id), "fix2", url=url, api_key=token)
    sent = run_ds[target.id].ewc_mask_edit
    cat_det = next(d for d in sent.detections if d.label == "cat")
    np.testing.assert_array_equal(cat_det.to_segmentation(frame_size=(w, h), target=1).get_mask() > 0, cat)
    run_ds.load_annotation_results("fix2", url=url, api_key=token).cleanup()

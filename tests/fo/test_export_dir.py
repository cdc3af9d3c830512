"""The export folder never costs the user a file: the dataset's own media and ground truth are
refused as a target, and --overwrite deletes only what an earlier export listed in its manifest."""

from __future__ import annotations

from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from ewc_fo.cli import main
from ewc_fo.fo.io.export import MANIFEST, check_out_dir, export_coco, export_voc
from ewc_fo.runtime.errors import ConfigError

P = "ewc"
H, W = 24, 32


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _dataset(img_dir: Path, mask_dir: Path, n: int = 3, gt_dir: Path | None = None,
             persistent: bool = False) -> fo.Dataset:
    """``n`` images in ``img_dir`` with a run mask each in ``mask_dir`` (and a ground-truth
    mask in ``gt_dir``), as an import followed by ``ewc-fo label`` leaves them."""
    ds = fo.Dataset(persistent=persistent)
    ds.mask_targets = {f"{P}_mask": {1: "cat"}}
    for d in (img_dir, mask_dir, gt_dir):
        if d:
            d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = img_dir / f"img{i}.jpg"
        Image.fromarray(np.full((H, W, 3), 40 * i, np.uint8)).save(img)
        lm = np.zeros((H, W), np.uint8)
        lm[4:12, 5 + i : 15 + i] = 1
        Image.fromarray(lm).save(mask_dir / f"m{i}.png")
        s = fo.Sample(filepath=str(img))
        s[f"{P}_mask"] = fo.Segmentation(mask_path=str(mask_dir / f"m{i}.png"))
        s[f"{P}_confidence"] = 0.9
        if gt_dir:
            Image.fromarray(lm).save(gt_dir / f"img{i}.png")
            s["ground_truth"] = fo.Segmentation(mask_path=str(gt_dir / f"img{i}.png"))
        ds.add_sample(s)
    return ds


def test_coco_overwrite_into_the_datasets_own_folder_is_refused(tmp_path, capsys):
    """Issue #14.1: images in DIR/data (the layout export writes), export --overwrite to DIR
    used to delete every image and exit 0."""
    root = tmp_path / "exported"
    ds = _dataset(root / "data", tmp_path / "run_masks", persistent=True)
    (root / "labels.json").write_text("{}")  # the COCO file the dataset came from
    before = _snapshot(root)
    try:
        rc = main(["export", ds.name, "--format", "coco", "--out", str(root), "--overwrite"])
        err = capsys.readouterr().err
        assert rc == 2 and "refusing to export into" in err and "dataset's own files" in err
        assert len(err.strip().splitlines()) == 1
        assert _snapshot(root) == before
        with pytest.raises(ConfigError, match="dataset's own files"):
            export_coco(ds, root, overwrite=True)
        assert _snapshot(root) == before
    finally:
        ds.delete()


def test_voc_overwrite_into_the_voc_folder_is_refused(tmp_path):
    """VOC layout: JPEGImages and SegmentationClass hold the dataset's images and ground truth."""
    root = tmp_path / "VOC"
    ds = _dataset(root / "JPEGImages", tmp_path / "run_masks", gt_dir=root / "SegmentationClass")
    before = _snapshot(root)
    with pytest.raises(ConfigError, match="dataset's own files"):
        export_voc(ds, root, overwrite=True)
    assert _snapshot(root) == before
    ds.delete()


def test_folder_holding_only_ground_truth_is_refused(tmp_path):
    """Images elsewhere, but the ground-truth masks live in the target: still refused."""
    root = tmp_path / "out"
    ds = _dataset(tmp_path / "imgs", tmp_path / "run_masks", gt_dir=root / "SegmentationClass")
    before = _snapshot(root)
    for fn in (export_voc, export_coco):
        with pytest.raises(ConfigError, match="dataset's own files"):
            fn(ds, root, overwrite=True)
    # the run's own masks are the dataset's files too
    with pytest.raises(ConfigError, match="dataset's own files"):
        check_out_dir(ds, tmp_path / "run_masks", overwrite=True)
    assert _snapshot(root) == before
    ds.delete()


def test_overwrite_deletes_only_what_the_manifest_lists(tmp_path):
    ds = _dataset(tmp_path / "imgs", tmp_path / "masks", n=3)
    out = tmp_path / "out"
    export_coco(ds, out)
    listed = (out / MANIFEST).read_text().splitlines()
    assert "labels.json" in listed and "data/" in listed and "data/img2.jpg" in listed
    # the user adds files next to and inside the export
    (out / "notes.txt").write_text("mine")
    (out / "data" / "img9.jpg").write_bytes(b"mine too")
    small = ds.limit(1)
    res = export_coco(small, out, overwrite=True)
    assert res.num_images == 1
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "data" / "img9.jpg").read_bytes() == b"mine too"
    left = sorted(p.name for p in (out / "data").iterdir())
    assert left == ["img0.jpg", "img9.jpg"]  # the other two of the first export are gone
    # per-image names never land on a foreign file: a foreign data/img0.jpg is kept
    ds2 = _dataset(tmp_path / "imgs2", tmp_path / "masks2", n=1)
    (out / "data" / "img0.jpg").unlink()
    (out / MANIFEST).write_text((out / MANIFEST).read_text().replace("data/img0.jpg\n", ""))
    (out / "data" / "img0.jpg").write_bytes(b"foreign")
    res = export_coco(ds2, out, overwrite=True)
    assert (out / "data" / "img0.jpg").read_bytes() == b"foreign"
    assert (out / "data" / "img0-2.jpg").is_file()
    ds.delete()
    ds2.delete()


def test_voc_overwrite_keeps_foreign_files(tmp_path):
    ds = _dataset(tmp_path / "imgs", tmp_path / "masks", n=2)
    out = tmp_path / "voc"
    export_voc(ds, out)
    (out / "JPEGImages" / "holiday.jpg").write_bytes(b"mine")
    (out / "SegmentationClass" / "img1.png").unlink()  # the user removed one, then re-exports
    export_voc(ds, out, overwrite=True)
    assert (out / "JPEGImages" / "holiday.jpg").read_bytes() == b"mine"
    assert sorted(p.name for p in (out / "SegmentationClass").iterdir()) == ["img0.png", "img1.png"]
    ds.delete()


def test_foreign_fixed_name_without_manifest_is_refused(tmp_path):
    ds = _dataset(tmp_path / "imgs", tmp_path / "masks", n=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.json").write_text("the user's own COCO file")
    with pytest.raises(ConfigError, match="not written by an ewc-fo export"):
        export_coco(ds, out, overwrite=True)
    assert (out / "labels.json").read_text() == "the user's own COCO file"
    (out / "class_names.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not written by an ewc-fo export"):
        export_voc(ds, out, overwrite=True)
    # a file that only has the manifest's name is not a manifest
    other = tmp_path / "other"
    other.mkdir()
    (other / MANIFEST).write_text("my shopping list")
    with pytest.raises(ConfigError, match=MANIFEST):
        export_coco(ds, other, overwrite=True)
    assert (other / MANIFEST).read_text() == "my shopping list"
    ds.delete()


def test_manifest_entries_outside_the_folder_are_ignored(tmp_path):
    ds = _dataset(tmp_path / "imgs", tmp_path / "masks", n=1)
    out = tmp_path / "out"
    export_coco(ds, out)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.txt").write_text("keep")
    (out / "link").symlink_to(elsewhere)
    with open(out / MANIFEST, "a") as f:
        f.write("../victim.txt\n" + str(victim) + "\nlink/x.txt\n../elsewhere/\n")
    export_coco(ds, out, overwrite=True)
    assert victim.read_text() == "keep" and (elsewhere / "x.txt").read_text() == "keep"
    ds.delete()


def test_interrupted_export_is_cleaned_by_the_next_overwrite(tmp_path):
    ds = _dataset(tmp_path / "imgs", tmp_path / "masks", n=3)
    out = tmp_path / "out"

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_coco(ds, out, progress=stop)
    listed = (out / MANIFEST).read_text().splitlines()
    assert "data/img0.jpg" in listed and "data/img1.jpg" in listed
    export_coco(ds.limit(1), out, overwrite=True)
    assert sorted(p.name for p in (out / "data").iterdir()) == ["img0.jpg"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["data", "labels.json", MANIFEST])
    ds.delete()


def test_check_out_dir_changes_nothing(tmp_path):
    ds = _dataset(tmp_path / "imgs", tmp_path / "masks", n=1)
    assert check_out_dir(ds, tmp_path / "new" / "out") == (tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()
    f = tmp_path / "afile"
    f.write_text("")
    with pytest.raises(ConfigError, match="not a folder"):
        check_out_dir(ds, f)
    with pytest.raises(ConfigError, match="cannot create export folder"):
        export_coco(ds, f / "sub")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        check_out_dir(ds, busy)
    assert check_out_dir(ds, busy, overwrite=True) == busy
    with pytest.raises(ConfigError, match="dataset's own files"):
        check_out_dir(ds, tmp_path, overwrite=True)
    ds.delete()

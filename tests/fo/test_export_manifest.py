"""Issue 23 (2): the export manifest cannot be turned against the user. It records each written
file's size and SHA-256, ``overwrite`` deletes only files that still match (an edited one is kept
with a warning naming it), names outside the exporters' layout and old v1 manifests are never
acted on, and a symlink among the paths an export would write or delete refuses the folder
before anything is written."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from ewc_fo.cli import main
from ewc_fo.fo.io.export import export_coco, export_voc
from ewc_fo.fo.io.export_dir import MANIFEST, prepare_out_dir
from ewc_fo.fo.io.export_manifest import _LAYOUT, _V1_HEADER, HEADER
from ewc_fo.runtime.errors import ConfigError
from tests.fo.test_export_dir import _dataset, _snapshot


@pytest.fixture
def ds(tmp_path):
    d = _dataset(tmp_path / "imgs", tmp_path / "masks", n=3)
    yield d
    d.delete()


def _records(out: Path) -> dict[str, tuple[int, str] | None]:
    """The manifest's last word on each path (None: listed without a hash)."""
    rec: dict[str, tuple[int, str] | None] = {}
    for ln in (out / MANIFEST).read_text().splitlines()[1:]:
        rel, *rest = ln.split("\t")
        rec[rel] = (int(rest[0]), rest[1]) if rest else None
    return rec


@pytest.mark.parametrize("fmt", ["coco", "voc"])
def test_the_manifest_records_size_and_sha256_of_every_file_written(ds, tmp_path, fmt):
    out = tmp_path / "out"
    (export_coco if fmt == "coco" else export_voc)(ds, out)
    rec = _records(out)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {MANIFEST}
    folders = {p.relative_to(out).as_posix() + "/" for p in out.rglob("*") if p.is_dir()}
    tmp = {".images.json.tmp", ".annotations.json.tmp"} if fmt == "coco" else set()
    assert set(rec) == on_disk | folders | tmp  # the COCO fragments: listed, then removed
    for rel in on_disk:
        data = (out / rel).read_bytes()
        assert rec[rel] == (len(data), hashlib.sha256(data).hexdigest()), rel
    for rel in rec:  # ...and every name either export writes is one the layout knows
        assert _LAYOUT.fullmatch(rel), rel


def test_overwrite_keeps_a_file_edited_since_and_names_it(ds, tmp_path, caplog):
    out = tmp_path / "out"
    export_coco(ds, out)
    (out / "data" / "img1.jpg").write_bytes(b"the user's retouched picture")
    with caplog.at_level(logging.WARNING):
        res = export_coco(ds.limit(1), out, overwrite=True)
    assert res.num_images == 1
    assert (out / "data" / "img1.jpg").read_bytes() == b"the user's retouched picture"
    assert sorted(p.name for p in (out / "data").iterdir()) == ["img0.jpg", "img1.jpg"]  # img2: unchanged, gone
    kept = [r.getMessage() for r in caplog.records if r.getMessage().startswith("kept")]
    assert kept == [f"kept {out / 'data' / 'img1.jpg'}: it changed since the export wrote it"]
    # the same file replaced by one of the same size is kept too (the hash, not only the size)
    export_coco(ds, tmp_path / "out2")
    p = tmp_path / "out2" / "data" / "img2.jpg"
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF
    p.write_bytes(bytes(data))
    export_coco(ds.limit(1), tmp_path / "out2", overwrite=True)
    assert p.read_bytes() == bytes(data)


def test_an_edited_fixed_file_refuses_the_export_before_anything_is_deleted(ds, tmp_path):
    out = tmp_path / "out"
    export_voc(ds, out)
    (out / "class_names.txt").write_text("background\nmy own cat\n")
    before = _snapshot(out)
    with pytest.raises(ConfigError, match="class_names.txt: it changed since the export wrote it"):
        export_voc(ds, out, overwrite=True)
    assert _snapshot(out) == before


def test_a_hand_edited_manifest_deletes_nothing_it_did_not_write(ds, tmp_path, caplog):
    """The attack of issue 23: lines added to the manifest for the user's notes, a file at a name
    the export could write, and a 5000-character line; none is deleted, the lines are skipped."""
    out = tmp_path / "out"
    export_coco(ds, out)
    (out / "notes.txt").write_text("mine")
    (out / "data" / "holiday.jpg").write_bytes(b"mine too")
    notes = hashlib.sha256(b"mine").hexdigest()
    with open(out / MANIFEST, "a") as f:
        f.write(f"notes.txt\t4\t{notes}\n")  # a correct hash, but not a name an export writes
        f.write("data/holiday.jpg\n")  # a layout name, but never sealed by the export
        f.write("x" * 5000 + "\n")
        f.write("data/img0.jpg\tNaN\tzz\n")
        f.write("data/img1.jpg\t\u00b2\t" + "0" * 64 + "\n")  # a digit to str.isdigit, not to int()
    with caplog.at_level(logging.WARNING):
        export_coco(ds, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "data" / "holiday.jpg").read_bytes() == b"mine too"
    assert "skipping 4 malformed line(s)" in caplog.text
    assert f"kept {out / 'data' / 'holiday.jpg'}: it has no recorded hash" in caplog.text
    assert sorted(p.name for p in (out / "data").iterdir()) == ["holiday.jpg", "img0.jpg", "img1.jpg", "img2.jpg"]


def test_an_old_manifest_without_hashes_is_refused_and_nothing_is_deleted(ds, tmp_path):
    out = tmp_path / "out"
    export_coco(ds, out)
    names = [ln.split("\t")[0] for ln in (out / MANIFEST).read_text().splitlines()[1:]]
    (out / MANIFEST).write_text(_V1_HEADER + "\n" + "".join(dict.fromkeys(n + "\n" for n in names)))
    before = _snapshot(out)
    with pytest.raises(ConfigError, match="earlier ewc-fo without file hashes.*empty .* by hand"):
        export_coco(ds, out, overwrite=True)
    assert _snapshot(out) == before


def test_a_file_listed_without_its_hash_is_kept(ds, tmp_path, caplog):
    """An export killed (SIGKILL) while writing a file lists it without a hash: it cannot be
    told from a file put there since, so it stays."""
    out = tmp_path / "out"
    export_coco(ds, out)
    (out / "data" / "img3.jpg").write_bytes(b"half an image")
    with open(out / MANIFEST, "a") as f:
        f.write("data/img3.jpg\n")
    with caplog.at_level(logging.WARNING):
        export_coco(ds, out, overwrite=True)
    assert (out / "data" / "img3.jpg").read_bytes() == b"half an image"
    assert "img3.jpg: it has no recorded hash" in caplog.text


def test_an_interrupted_voc_export_seals_what_it_wrote_and_the_next_overwrite_cleans_it(ds, tmp_path):
    out = tmp_path / "voc"

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_voc(ds, out, progress=stop)
    rec = _records(out)
    assert rec["ImageSets/Segmentation/train.txt"] is not None  # the open ids file was sealed on the way out
    assert rec["JPEGImages/img1.jpg"] is not None
    export_voc(ds.limit(1), out, overwrite=True)
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == ["img0.jpg"]
    assert (out / "ImageSets" / "Segmentation" / "train.txt").read_text() == "img0\n"


@pytest.mark.parametrize("entry", ["data", "data/img1.jpg", "labels.json"])
def test_a_symlink_among_the_paths_written_or_deleted_is_refused_before_anything_is_written(
        ds, tmp_path, entry):
    out = tmp_path / "out"
    export_coco(ds, out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = out / entry
    target.rename(elsewhere / target.name)  # the same bytes, moved out and linked back in
    target.symlink_to(elsewhere / target.name, target_is_directory=target.name == "data")
    before, theirs = _snapshot(out), _snapshot(elsewhere)
    with pytest.raises(ConfigError, match=f"{target} is a symlink"):
        export_coco(ds, out, overwrite=True)
    assert _snapshot(out) == before and _snapshot(elsewhere) == theirs
    assert target.is_symlink()


def test_a_symlinked_voc_folder_without_a_manifest_is_refused(ds, tmp_path):
    out = tmp_path / "voc"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "SegmentationClass").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match="SegmentationClass is a symlink"):
        export_voc(ds, out, overwrite=True)
    assert list(elsewhere.iterdir()) == [] and sorted(p.name for p in out.iterdir()) == ["SegmentationClass"]


def test_cli_overwrite_names_the_kept_file_on_one_line(tmp_path, capsys, caplog):
    """(Outside pytest the warning goes to stderr through logging's last-resort handler.)"""
    ds = _dataset(tmp_path / "imgs", tmp_path / "masks", n=2, persistent=True)
    out = tmp_path / "out"
    try:
        assert main(["export", ds.name, "--format", "coco", "--out", str(out)]) == 0
        (out / "data" / "img0.jpg").write_bytes(b"edited")
        with caplog.at_level(logging.WARNING):
            assert main(["export", ds.name, "--format", "coco", "--out", str(out), "--overwrite"]) == 0
        lines = [r.getMessage() for r in caplog.records if "kept" in r.getMessage()]
        assert len(lines) == 1 and str(out / "data" / "img0.jpg") in lines[0]
        assert (out / "data" / "img0.jpg").read_bytes() == b"edited"
        os.symlink(tmp_path / "imgs", out / "data" / "img1.jpg.lnk")  # a foreign link, not listed: untouched
        (out / "labels.json").unlink()
        (out / "labels.json").symlink_to(tmp_path / "nowhere.json")
        capsys.readouterr()
        rc = main(["export", ds.name, "--format", "coco", "--out", str(out), "--overwrite"])
        err = capsys.readouterr().err
        assert rc == 2 and "labels.json is a symlink" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "nowhere.json").exists()
    finally:
        ds.delete()


def test_a_manifest_that_is_a_symlink_is_refused(ds, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.txt"
    os.symlink(outside, out / MANIFEST)  # dangling: writing it would create a file outside
    with pytest.raises(ConfigError, match="is a symlink"):
        prepare_out_dir(ds, out, overwrite=True)
    assert not outside.exists()


def test_a_malformed_manifest_line_is_skipped_with_a_warning(ds, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.txt").write_text("written by the export")
    size, digest = 21, hashlib.sha256(b"written by the export").hexdigest()
    (out / MANIFEST).write_text(HEADER + "x" * 5000 + "\n" + f"labels.txt\t{size}\t{digest}\n")
    with caplog.at_level(logging.WARNING):
        prepare_out_dir(ds, out, overwrite=True)
    assert not (out / "labels.txt").exists()
    assert "malformed line" in caplog.text


def test_a_folder_holding_another_datasets_images_or_a_runs_maps_is_refused(ds, tmp_path):
    from ewc_fo.fo.runs import record as runs

    out = tmp_path / "out"
    out.mkdir()
    theirs = out / "theirs.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(theirs)
    other = fo.Dataset()
    other.add_sample(fo.Sample(filepath=str(theirs)))
    try:
        with pytest.raises(ConfigError, match=f"images of dataset {other.name!r}"):
            prepare_out_dir(ds, out, overwrite=True)
        assert theirs.exists()
        other.delete()
        theirs.unlink()
        (out / "maps").mkdir()
        (out / "maps" / "s1.npz").write_bytes(b"a run's maps")
        runs.save_run(ds, "ewc", {"output_dir": str(out), "status": "complete", "fields": {}})
        with pytest.raises(ConfigError, match="maps of run 'ewc'"):
            prepare_out_dir(ds, out, overwrite=True)
        assert (out / "maps" / "s1.npz").exists()
    finally:
        if fo.dataset_exists(other.name):
            other.delete()


def test_a_second_datasets_images_at_names_the_manifest_lists_are_refused(ds, tmp_path):
    """A manifest listing another dataset's images (exported here, then imported as a dataset
    of their own): the folder is refused, nothing deleted."""
    out = tmp_path / "out"
    export_coco(ds, out)
    other = fo.Dataset()
    other.add_samples([fo.Sample(filepath=str(p)) for p in sorted((out / "data").iterdir())])
    before = _snapshot(out)
    try:
        with pytest.raises(ConfigError, match=f"images of dataset {other.name!r}"):
            export_coco(ds, out, overwrite=True)
        assert _snapshot(out) == before
    finally:
        other.delete()

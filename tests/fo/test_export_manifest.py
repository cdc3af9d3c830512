"""Issue 23 (2), the parts done: a manifest that is a symlink is refused (a dangling one made
the export write outside the folder), a malformed manifest line is skipped with a warning."""

from __future__ import annotations

import logging
import os

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from ewc_fo.fo.io.export_dir import _HEADER, MANIFEST, prepare_out_dir
from ewc_fo.runtime.errors import ConfigError


@pytest.fixture
def ds(tmp_path):
    img = tmp_path / "src" / "a.png"
    img.parent.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    d = fo.Dataset()
    d.add_sample(fo.Sample(filepath=str(img)))
    yield d
    d.delete()


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
    (out / "ours.txt").write_text("written by the export")
    (out / MANIFEST).write_text(_HEADER + "x" * 5000 + "\n" + "ours.txt\n")
    with caplog.at_level(logging.WARNING):
        prepare_out_dir(ds, out, overwrite=True)
    assert not (out / "ours.txt").exists()
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

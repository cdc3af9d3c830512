"""Issue 23 (3): file names that are not UTF-8 are skipped with a count, and a failed
import never leaves a partial dataset."""

from __future__ import annotations

import os

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from ewc_fo.cli import main
from ewc_fo.fo.io.importers import import_folder


def _folder(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "good.png")
    bad = os.path.join(os.fsencode(str(root)), b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    with open(bad, "wb") as f:
        f.write((root / "good.png").read_bytes())
    return root


def test_a_non_utf8_file_name_is_skipped_with_a_count(tmp_path, capsys):
    root = _folder(tmp_path)
    assert main(["create", "names-latin1", str(root), "--from", "folder"]) == 0
    out = capsys.readouterr().out
    ds = fo.load_dataset("names-latin1")
    try:
        assert len(ds) == 1 and ds.info["ewc_import"]["skipped_names"] == 1
        assert "1 files skipped: their names are not valid UTF-8" in out
    finally:
        ds.delete()


def test_a_failed_import_leaves_no_dataset(tmp_path, monkeypatch):
    root = _folder(tmp_path)

    def disk_gone(self, *a, **k):
        raise OSError("input/output error")

    monkeypatch.setattr(fo.Dataset, "compute_metadata", disk_gone)
    with pytest.raises(OSError):
        import_folder("names-failed", root)
    assert not fo.dataset_exists("names-failed")

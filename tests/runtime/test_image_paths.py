"""Issue 23 (6): what stands where an image should be is said as it is."""

from __future__ import annotations

import os

import pytest

from ewc_fo.runtime.errors import ImageLoadError
from ewc_fo.runtime.images import load_image


def test_symlink_loops_folders_and_dangling_links_are_named(tmp_path):
    loop = tmp_path / "loop.jpg"
    os.symlink(loop, loop)
    folder = tmp_path / "x.jpg"
    folder.mkdir()
    dangling = tmp_path / "gone.jpg"
    os.symlink(tmp_path / "nowhere.jpg", dangling)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    for path, want in ((loop, "symlink loop"), (folder, "is a folder, not a file"),
                       (dangling, "symlink to a missing file"), (fifo, "not a regular file"),
                       (tmp_path / "missing.jpg", "image file not found")):
        with pytest.raises(ImageLoadError, match=want):
            load_image(path)

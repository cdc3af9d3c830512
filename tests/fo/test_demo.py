"""The README's main job (`ewc-fo demo`) runs end to end, offline, and resumes idempotently."""

from __future__ import annotations

import os

import fiftyone as fo
from PIL import Image

from ewc_fo.cli import main
from ewc_fo.demo import DEMO_DATASET, PHOTOS


def test_demo_end_to_end(capsys):
    assert main(["demo", "--segmenter", "grabcut", "--fresh"]) == 0
    out = capsys.readouterr().out
    assert "4 labeled, 0 failed" in out
    assert "ewc-low-confidence" in out and f"ewc-fo app {DEMO_DATASET}" in out
    ds = fo.load_dataset(DEMO_DATASET)
    assert len(ds.exists("ewc_confidence")) == len(PHOTOS)
    pic = out.split("Picture of the maps and masks: ", 1)[1].splitlines()[0].strip()
    assert os.path.isfile(pic) and Image.open(pic).height > 4 * 100  # a row per (image, class), as tall as the photo
    # a second call finds the finished run and only reports it
    assert main(["demo"]) == 0
    assert "labeled 4 of 4" in capsys.readouterr().out

"""Ctrl-C on `ewc-fo label` while GrabCut is stuck stops the run at once; the resumed run
fails the degenerate image with a clear error instead of hanging on it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import fiftyone as fo
import numpy as np
from PIL import Image

import ewc_fo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# the CLI in a child with both guards off (flat-image check, GrabCut's dominant-colour
# check): a flat grey image then sticks inside cv2.grabCut, as it did before them
CHILD = textwrap.dedent("""
    import sys
    from ewc_fo.engine import maps
    from ewc_fo.segmenters import grabcut as segmenters
    maps.check_not_flat = lambda image: None
    segmenters._one_colour_both_sides = lambda *a: False
    original = segmenters.GrabCutSegmenter._grabcut
    def announce(self, *a):
        print("in grabcut", flush=True)
        return original(self, *a)
    segmenters.GrabCutSegmenter._grabcut = announce
    from ewc_fo.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigint_during_a_stuck_grabcut_stops_the_cli_then_resume_fails_the_sample(tmp_path):
    path = str(tmp_path / "grey.png")
    Image.fromarray(np.full((400, 500, 3), 50, np.uint8)).save(path)
    ds = fo.Dataset("interrupt-flat")
    ds.persistent = True  # the child process opens it by name
    ds.add_sample(fo.Sample(filepath=path, labels=fo.Classification(label="nematode")))
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [ds.name, "--label-field", "labels", "--segmenter", "grabcut", "--sample-timeout", "0",
            "--output-dir", str(tmp_path / "out")]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "label", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while line != "in grabcut":  # wait until the run is inside GrabCut
            line = proc.stdout.readline().strip()
            assert line or proc.poll() is None, proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # before the fix: ignored until GrabCut returned
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "interrupted; run the same command again to resume" in err, err[-2000:]

    summary = ewc_fo.label(ds, "labels", segmenter="grabcut", progress_bar=False,
                           output_dir=str(tmp_path / "out"))
    assert summary.errors == {"flat_image": 1} and summary.succeeded == 0
    assert "one flat colour" in ds.first()["ewc_error"]
    ds.delete()

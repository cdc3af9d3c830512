"""Output folders are keyed by the dataset, not its name: two datasets called alike in two
databases (a second ``mongod``, as another team's) never touch each other's files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import fiftyone as fo
import pytest

import ewc_fo
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.fo.runs.output_dir import OWNER_FILE, default_output_dir
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.segmenters import create_segmenter
from tests._mongod import start_mongod, stop

from ._data import make_dataset

ROOT = Path(__file__).resolve().parents[2]
NAME = "ewc-twin-name"
LABEL = textwrap.dedent("""
    import sys, ewc_fo
    from ewc_fo.engine.pipeline import EWCConfig
    from ewc_fo.segmenters import create_segmenter
    from ewc_fo.fo.runs.record import get_run
    from tests.fo._data import make_dataset
    ds = make_dataset(sys.argv[1], sys.argv[2], n=1)
    ewc_fo.label(ds, "labels", segmenter=create_segmenter("grabcut"), config=EWCConfig(explain_size=160),
                 progress_bar=False)
    print("OUT=" + get_run(ds, "ewc")["output_dir"])
""")


def _files(folder: str) -> dict[str, str]:
    out = {}
    for d, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(d, n)
            out[p] = hashlib.sha256(Path(p).read_bytes()).hexdigest() + str(os.stat(p).st_mtime_ns)
    return out


@pytest.fixture
def other_db(tmp_path):
    proc, uri = start_mongod(str(tmp_path / "db2"))
    yield uri
    stop(proc)


def test_same_name_in_two_databases_keeps_files_apart(tmp_path, other_db):
    env = {**os.environ, "FIFTYONE_DATABASE_URI": other_db, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", LABEL, str(tmp_path / "img2"), NAME], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    theirs = res.stdout.split("OUT=")[-1].strip()
    before = _files(theirs)
    assert any(p.endswith(".png") for p in before)

    ds = make_dataset(str(tmp_path / "img1"), NAME, n=1)
    assert NAME not in fo.list_datasets() or fo.load_dataset(NAME)._doc.id == ds._doc.id
    ours = default_output_dir(ds, "ewc")
    assert ours != theirs and os.path.basename(os.path.dirname(ours)) == f"{NAME}-{ds._doc.id}"
    kw = dict(segmenter=create_segmenter("grabcut"), config=EWCConfig(explain_size=160), progress_bar=False)
    ewc_fo.label(ds, "labels", **kw)
    assert any(p.endswith(".png") for p in _files(ours))
    assert _files(theirs) == before  # not one file of the other dataset touched
    # the other dataset's folder, named explicitly: refused before anything is written
    with pytest.raises(ConfigError, match="another dataset"):
        ewc_fo.label(ds, "labels", prefix="b", output_dir=theirs, **kw)
    assert _files(theirs) == before
    assert os.path.isfile(os.path.join(ours, OWNER_FILE))
    ds.delete()

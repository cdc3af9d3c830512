"""The App's operations report progress as the terminal bars do (issue 22 item 9): label (compute),
export and fit each send ``ctx.set_progress`` updates that rise to 1.0, with a rate and an ETA."""

from __future__ import annotations

import sys

import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionContext

from ..fo._data import make_dataset
from .conftest import FAST, URI


@pytest.fixture
def reported(monkeypatch):
    """Every ``ctx.set_progress`` of the operators, unthrottled."""
    seen: list[tuple[float, str]] = []
    monkeypatch.setattr(ExecutionContext, "set_progress",
                        lambda self, progress=None, label=None: seen.append((progress, label)))
    progress_cls = sys.modules[type(foo.get_operator(f"{URI}/export_masks")).__module__].Progress
    monkeypatch.setattr(progress_cls, "EVERY", 0.0)
    return seen


def _rises(seen: list[tuple[float, str]], what: str, n: int) -> None:
    fracs = [p for p, _ in seen]
    assert len(fracs) >= n, seen  # at least one update per image (or per pass of images)
    assert fracs == sorted(fracs) and fracs[-1] == 1.0, seen
    assert all(label.startswith(what) and "img/s" in label for _, label in seen), seen
    assert any("left" in label for _, label in seen[:-1]), seen  # an ETA while work remains


def test_label_export_and_fit_report_rising_progress(tmp_path, monkeypatch, reported):
    ds = make_dataset(str(tmp_path / "imgs"), "plugin-progress", n=8)  # fitting needs 2 images a class
    three = ds.limit(3)
    # the operators write only under the export root (issue 23): the test's own one
    monkeypatch.setenv("EWC_FO_EXPORT_ROOT", str(tmp_path / "exports"))
    foo.get_operator(f"{URI}/compute_ewc")(three, "labels", output_dir=str(tmp_path / "exports" / "out"), **FAST)
    _rises(reported, "labeling", 3)
    # inside a batch the stages move it too, named in the label (issue 22 item 9)
    assert any(label.endswith("(segment fused)") and p < 1 for p, label in reported), reported

    reported.clear()
    res = foo.get_operator(f"{URI}/export_masks")(three, "coco", format="coco")
    assert res["num_images"] == 3
    _rises(reported, "exporting", 3)

    reported.clear()
    foo.get_operator(f"{URI}/fit_classifier")(ds, "labels", str(tmp_path / "exports" / "clf.safetensors"), fit_size=64)
    _rises(reported, "fitting", 2)  # 8 images' features in passes of 4

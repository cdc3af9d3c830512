"""What must match to resume a run (fo/runs/plan.py): a quantized segmenter is another one."""

from __future__ import annotations

from ewc_fo.fo.runs.plan import _comparable


def _described(**seg):
    return {"classifier": {"name": "c"}, "explainers": ["gradcam"], "config": {"a": 1},
            "segmenter": {"name": "sam-onnx", **seg}}


def test_int8_encoder_masks_do_not_resume_an_fp32_run():
    fp32, bare, int8 = _described(precision="fp32"), _described(), _described(precision="int8")
    assert _comparable(fp32) == _comparable(bare)  # runs recorded before the option still resume
    assert _comparable(int8) != _comparable(fp32)
    assert _comparable(int8)["segmenter"] == "sam-onnx/int8"

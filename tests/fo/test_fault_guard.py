"""Internal errors in a row are the environment's fault, not the samples' (issue 23)."""

from __future__ import annotations

import pytest

from ewc_fo.fo.runs.outcome import INTERNAL_STREAK, FaultGuard, LabelSummary
from ewc_fo.runtime.errors import EnvironmentFaultError

OK = {"confidence": 0.5}
BAD = {"error": "not a label", "error_kind": "unknown_class"}
INTERNAL = {"error": "internal error: InvalidProtobuf: bad file", "error_kind": "internal"}


def test_a_lone_internal_error_fails_its_sample_once_the_next_result_arrives():
    s = LabelSummary("ewc", 4)
    g = FaultGuard(s)
    assert g.add("a", INTERNAL) == []  # held: whose fault is not known yet
    assert g.add("b", OK) == [("a", INTERNAL), ("b", OK)]
    assert g.add("c", INTERNAL) == [] and g.release() == [("c", INTERNAL)]
    assert s.succeeded == 1 and s.errors == {"internal": 2}
    assert FaultGuard(s).add("d", BAD) == [("d", BAD)]


def test_internal_errors_in_a_row_stop_the_run_and_record_none_of_them():
    s = LabelSummary("ewc", 5)
    g = FaultGuard(s)
    assert g.add("ok", OK) == [("ok", OK)]
    for i in range(INTERNAL_STREAK - 1):
        assert g.add(str(i), INTERNAL) == []
    with pytest.raises(EnvironmentFaultError) as e:
        g.add("last", INTERNAL)
    assert "InvalidProtobuf" in str(e.value) and "\n" not in str(e.value)
    assert s.succeeded == 1 and not s.errors  # the held samples were never counted or written

"""The correction operators (plugins/ewc-fo/annotate_ops.py) run ewc_fo.fo.review.annotate.

Called directly with a small stand-in context: the round trip against a real Label Studio is
tests/fo/test_annotate.py; here, the forms and the wiring of view, params and secrets.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import SimpleNamespace

import fiftyone as fo
import numpy as np
import pytest

from ewc_fo.runtime.errors import ConfigError
from tests._mongod import free_port

HERE = os.path.dirname(__file__)
_PLUGIN = os.path.join(HERE, "..", "..", "plugins", "ewc-fo")
# loaded as a package: the module shares the plugin's one-line error wrapper (relative imports)
_spec = importlib.util.spec_from_file_location("ewc_fo_plugin_under_test", os.path.join(_PLUGIN, "__init__.py"),
                                               submodule_search_locations=[_PLUGIN])
sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules[_spec.name])
ops = importlib.import_module(f"{_spec.name}.annotate_ops")


@pytest.fixture
def ds(tmp_path):
    d = fo.Dataset()
    d.add_samples([
        fo.Sample(filepath=str(tmp_path / f"{i}.jpg"), ewc_confidence=c,
                  ewc_mask=fo.Segmentation(mask=np.eye(8, dtype=np.uint8)), tags=t)
        for i, (c, t) in enumerate([(0.1, []), (0.9, ["ewc:reject"]), (0.8, [])])
    ])
    d.mask_targets = {"ewc_mask": {0: "background", 1: "cat"}}
    d.save()
    d.register_run("ewc", d.init_run(ewc_type="ewc_fo.label", fields={}))
    yield d
    d.delete()


def _ctx(ds, params, secrets=None):
    # delegated: the operator's one-line error comes back as the ewc-fo exception (immediate
    # runs return it as {"error": ...}: tests/plugin/test_operator_inputs.py)
    return SimpleNamespace(dataset=ds, params=params, target_view=lambda: ds.view(), delegated=True,
                           secrets=secrets or {}, ops=SimpleNamespace(reload_dataset=lambda: None))


def test_forms(ds, monkeypatch):
    monkeypatch.setattr(ops, "_runs", lambda dataset: ["ewc"])
    form = ops.SendForCorrection().resolve_input(_ctx(ds, {}))
    props = form.type.properties
    assert {"prefix", "which", "max_confidence", "anno_key", "url"} <= set(props)
    assert "max_confidence" not in ops.SendForCorrection().resolve_input(_ctx(ds, {"which": "view"})).type.properties
    assert "none" in ops.LoadCorrections().resolve_input(_ctx(ds, {})).type.properties  # no run yet


def test_send_uses_candidates_and_secrets(ds, monkeypatch):
    seen = {}

    def fake_send(view, key, prefix, **kw):
        seen.update(ids=view.values("ewc_confidence"), key=key, prefix=prefix, **kw)

    monkeypatch.setattr("ewc_fo.fo.review.annotate.send_for_correction", fake_send)
    secrets = {"FIFTYONE_LABELSTUDIO_API_KEY": "k", "FIFTYONE_LABELSTUDIO_URL": "http://127.0.0.1:1"}
    out = ops.SendForCorrection().execute(
        _ctx(ds, {"prefix": "ewc", "which": "candidates", "max_confidence": 0.3, "anno_key": "fix"}, secrets)
    )
    assert out == {"sent": 2, "rejected": 1, "accepted": 0, "unreviewed": 1, "anno_key": "fix"}
    assert seen == {"ids": [0.1, 0.9], "key": "fix", "prefix": "ewc", "url": "http://127.0.0.1:1", "api_key": "k"}


def test_send_leaves_accepted_out_unless_asked(ds, monkeypatch):
    seen = {}
    monkeypatch.setattr(ops, "_runs", lambda dataset: ["ewc"])
    monkeypatch.setattr("ewc_fo.fo.review.annotate.send_for_correction",
                        lambda view, key, prefix, **kw: seen.update(c=sorted(view.values("ewc_confidence"))))
    s = ds.match({"ewc_confidence": 0.1}).first()
    s.tags.append("ewc:reviewed")
    s.save()
    secrets = {"FIFTYONE_LABELSTUDIO_API_KEY": "k"}
    for which in ("candidates", "view"):
        params = {"prefix": "ewc", "which": which, "max_confidence": 0.3, "anno_key": "fix"}
        out = ops.SendForCorrection().execute(_ctx(ds, params, secrets))
        assert 0.1 not in seen["c"] and out["accepted"] == 0
        out = ops.SendForCorrection().execute(_ctx(ds, {**params, "include_accepted": True}, secrets))
        assert 0.1 in seen["c"] and out["accepted"] == 1
    assert "include_accepted" in ops.SendForCorrection().resolve_input(_ctx(ds, {})).type.properties


def test_send_errors_are_clear(ds):
    params = {"prefix": "ewc", "which": "view", "anno_key": "fix", "url": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(ConfigError, match="no Label Studio API key"):  # not FiftyOne's getpass prompt
        ops.SendForCorrection().execute(_ctx(ds, params))
    with pytest.raises(ConfigError, match="could not send"):
        ops.SendForCorrection().execute(_ctx(ds, params, {"FIFTYONE_LABELSTUDIO_API_KEY": "k"}))
    assert ds.list_annotation_runs() == []

"""Early answers (issue 22 item 8): a mistyped dataset or label field is reported from one
database query before FiftyOne's own loading, with "did you mean", and the suggestion never
offers a field the tool itself wrote (``P_classes``)."""

from __future__ import annotations

import fiftyone as fo
import pytest

import ewc_fo.commands._common as common
from ewc_fo.cli import main
from ewc_fo.commands._lookup import label_field_choices, run_output_fields
from ewc_fo.runtime.errors import ConfigError


@pytest.fixture
def ds():
    d = fo.Dataset("ewc-lookup-photos")
    d.add_sample_field("labels", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
    d.add_sample_field("ewc_classes", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
    d.add_sample_field("ewc_mask", fo.EmbeddedDocumentField, embedded_doc_type=fo.Segmentation)
    yield d
    d.delete()


@pytest.fixture
def no_fiftyone_path(monkeypatch):
    """Fail if a command gets as far as asking FiftyOne for the dataset (tests/commands/
    test_checks.py shows, in a fresh process, that FiftyOne is not even imported)."""
    def boom(*a, **k):
        raise AssertionError("reached FiftyOne's dataset loading")

    monkeypatch.setattr(fo, "dataset_exists", boom)
    monkeypatch.setattr(fo, "load_dataset", boom)


def test_dataset_typo_answered_early_with_did_you_mean(ds, no_fiftyone_path, capsys):
    assert main(["summary", "ewc-lookup-photoz"]) == 2
    err = capsys.readouterr().err
    assert "no FiftyOne dataset named 'ewc-lookup-photoz'; did you mean 'ewc-lookup-photos'?" in err


def test_label_field_typo_never_suggests_the_tools_own_fields(ds, no_fiftyone_path, capsys):
    assert main(["label", ds.name, "--label-field", "label"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'labels'?" in err and "ewc_classes" not in err
    assert main(["fit", ds.name, "--label-field", "ewc_klasses", "--out", "/tmp/x.safetensors"]) == 2
    assert "ewc_classes" not in capsys.readouterr().err


def test_slow_path_hint_leaves_run_fields_out_too(ds):
    with pytest.raises(ConfigError) as e:
        common.check_label_field(ds, "lables")
    assert "did you mean 'labels'" in str(e.value) and "ewc_classes" not in str(e.value)


def test_choices():
    fields = {"labels": "fiftyone.core.labels.Classifications", "p_classes": "fiftyone.core.labels.Classifications",
              "p_mask": "fiftyone.core.labels.Segmentation", "q_classes": "fiftyone.core.labels.Classifications"}
    assert run_output_fields(list(fields)) == {"p_classes"}
    assert label_field_choices(fields) == ["labels", "q_classes"]  # q_classes: no q_mask, the user's own

"""The `ewc-fo` command: label, summary, errors, explainer listing."""

from __future__ import annotations

from ewc_fo.cli import main

from ._data import make_dataset


def test_list_explainers_and_usage_errors(capsys):
    assert main(["label", "--list-explainers"]) == 0
    out = capsys.readouterr().out
    assert "gradcam  (default)" in out and "occlusion" in out
    assert main(["label"]) == 2
    assert "--label-field" in capsys.readouterr().err
    assert main(["label", "no-such-dataset", "--label-field", "labels"]) == 2
    assert "no FiftyOne dataset named" in capsys.readouterr().err
    assert main([]) == 2


def test_label_then_summary(tmp_path, capsys):
    make_dataset(str(tmp_path / "i"), "cli-label", n=2)
    args = ["label", "cli-label", "--label-field", "labels", "--segmenter", "grabcut",
            "--explainers", "gradcam,layercam", "--explain-size", "160", "--output-dir", str(tmp_path / "o")]
    assert main(args) == 0
    assert "2 labeled, 0 failed" in capsys.readouterr().out
    assert main(args) == 2  # finished run: needs --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["summary", "cli-label", "--worst", "1"]) == 0
    out = capsys.readouterr().out
    assert "labeled 2 of 2" in out and "lowest confidence first" in out and "ewc-low-confidence" in out
    # a subset without a saved view first (in its own --output-dir: files are named by sample
    # id, so two prefixes sharing one would overwrite each other's masks, docs/concurrency.md)
    assert main([*args[:-1], str(tmp_path / "o_sub"), "--prefix", "sub", "--limit", "1"]) == 0
    assert "1 labeled, 0 failed" in capsys.readouterr().out


def test_method_options_reach_the_config():
    import argparse

    from ewc_fo.commands.label import build_config

    ns = argparse.Namespace(explainers="gradcam, layercam", explain_size=None, fg_threshold=0.7,
                            bg_threshold=None, box_threshold=None, temperature=0.2,
                            mask_weight=0.25, class_competition=0.0, refine="pamr")
    cfg = build_config(ns)
    assert cfg.refine == "pamr" and cfg.to_dict()["refine"] == "pamr"
    assert cfg.explainers == ("gradcam", "layercam") and cfg.prompts.fg_threshold == 0.7
    assert cfg.score.temperature == 0.2 and cfg.mask_weight == 0.25 and cfg.class_competition == 0.0
    assert cfg.to_dict()["mask_weight"] == 0.25  # recorded with the run


def test_a_commands_label_field_is_not_checked_by_the_next_command(tmp_path, capsys):
    """``ewc-fo evaluate`` has no --label-field: after a ``label`` in the same process (the
    Python API, a notebook, a test worker), it must not check the label run's field."""
    from ewc_fo.commands import _lookup

    ds = make_dataset(str(tmp_path / "i"), "cli-field-once", n=2)
    assert main(["label", ds.name, "--label-field", "no_such_field"]) == 2
    assert "no field 'no_such_field'" in capsys.readouterr().err
    assert _lookup.REQUESTED_FIELD is None
    ds.delete()

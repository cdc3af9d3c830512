"""Issue 23 (4): integers range-checked at parse time, options that do nothing in the mode
refused, split names that are not plain names refused: one line, exit 2, before torch."""

from __future__ import annotations

from tests.commands.test_checks import _cli_in_fresh_process


def test_late_or_silent_values_are_refused_at_once(tmp_path):
    lab = ["label", "ds", "--label-field", "labels"]
    exp = ["export", "ds", "--out", str(tmp_path / "o"), "--format", "voc"]
    cases = {
        "--batch-size: must be at most 1000000000, got 99999999999999999999": lab + ["--batch-size", "99999999999999999999"],
        "--batch-size: must be at most 4096, got 5000": lab + ["--batch-size", "5000"],
        "--max-classes: must be at most 1000000000": lab + ["--max-classes", "10000000000"],
        "--workers only apply with --ray": lab + ["--workers", "3"],
        "--threads-per-worker only apply with --ray": lab + ["--threads-per-worker", "2"],
        "--split: '../../etc' is not a plain name": exp + ["--split", "../../etc"],
        "--split: '..' is not a plain name": exp + ["--split", ".."],
        "--proposal-objectness: must be on or off, got maybe": lab + ["--proposal-objectness", "maybe"],
    }
    results, err = _cli_in_fresh_process(list(cases.values()))
    assert len(err) == len(cases), err
    for (want, argv), res, line in zip(cases.items(), results, err):
        assert res["rc"] == 2 and not res["torch"], (argv, res, line)
        assert want in line, (want, line)


def test_proposal_objectness_reaches_the_config():
    from ewc_fo.cli import build_parser
    from ewc_fo.commands.label import build_config

    base = ["label", "ds", "--label-field", "labels"]
    for flag, want in (([], None), (["--proposal-objectness", "off"], False), (["--proposal-objectness", "on"], True)):
        assert build_config(build_parser().parse_args(base + flag)).proposal_objectness is want

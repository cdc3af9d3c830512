"""The quality benchmark runs end to end in a small mode on a generated VOC-style folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _voc_folder(root: Path, n: int = 8) -> Path:
    """Discs and squares on noise, with palette masks: a VOC devkit in miniature."""
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = []
    for i in range(n):
        img = rng.integers(60, 120, (96, 128, 3), dtype=np.uint8)
        mask = np.zeros((96, 128), np.uint8)
        yy, xx = np.mgrid[:96, :128]
        cx, cy = rng.integers(35, 93), rng.integers(30, 66)
        if i % 2 == 0:
            obj = (yy - cy) ** 2 + (xx - cx) ** 2 < 22 ** 2
            img[obj] = (220, 40, 40)
            mask[obj] = 1
        else:
            obj = (abs(yy - cy) < 20) & (abs(xx - cx) < 20)
            img[obj] = (40, 40, 220)
            mask[obj] = 2
        mask[np.roll(obj, 1, 0) ^ obj] = 255  # a void border, as in VOC
        iid = f"img_{i:03d}"
        Image.fromarray(img).save(root / "JPEGImages" / f"{iid}.jpg", quality=95)
        pm = Image.fromarray(mask, mode="P")
        pm.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (252 * 3) + [224, 224, 192])
        pm.save(root / "SegmentationClass" / f"{iid}.png")
        ids.append(iid)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    (root / "classes.json").write_text(json.dumps({"classes": ["background", "disc", "square"]}))
    return root


def test_quality_benchmark_small(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("quality_bench", ROOT / "benchmarks" / "quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = _voc_folder(tmp_path / "voc")
    out = tmp_path / "out"
    rc = bench.main(["--data", str(data), "--fit-size", "96", "--explain-size", "128",
                     "--out", str(out), "--name", "bench-small", "--batch-size", "4"])
    assert rc == 0
    md = (out / "quality.md").read_text()
    assert "| fused |" in md and "| gradcam |" in md
    assert (out / "per_class_iou.png").is_file() and (out / "confidence_vs_iou.png").is_file()
    printed = capsys.readouterr().out
    assert "mIoU" in printed
    # the table's numbers are real percentages
    fused = next(line for line in md.splitlines() if line.startswith("| fused |"))
    cells = [c.strip() for c in fused.strip("|").split("|")]
    assert cells[1].endswith(")") and 0.0 <= float(cells[2].rstrip("%")) <= 100.0


def test_fusion_study_small(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fusion_study", ROOT / "benchmarks" / "fusion_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    data = _voc_folder(tmp_path / "voc", n=6)
    args = ["--data", str(data), "--cache", str(tmp_path / "cache"), "--fit-size", "96",
            "--explain-size", "128", "--workers", "1", "--variants", "default,previous",
            "--singles", "--out", str(tmp_path / "table.md")]
    assert study.main(args) == 0
    rows = {line.split("|")[1].strip(): line for line in (tmp_path / "table.md").read_text().splitlines()
            if line.startswith("| default") or line.startswith("| previous")}
    assert set(rows) == {"default", "previous"}
    cells = [c.strip() for c in rows["default"].strip("|").split("|")]
    assert 0.0 <= float(cells[1].rstrip("%")) <= 100.0 and 0.0 <= float(cells[2].rstrip("%")) <= 100.0
    assert "gradcam" in cells[-1]  # each single explainer has its own mIoU
    # the maps are cached: a second run explains nothing and gives the same table
    capsys.readouterr()
    assert study.main(args[:-2]) == 0
    out = capsys.readouterr().out
    assert "explained" not in out and cells[1] in out
    assert study.main(["--data", str(data), "--variants", "nope", "--cache", str(tmp_path / "cache"),
                       "--fit-size", "96", "--explain-size", "128"]) == 2

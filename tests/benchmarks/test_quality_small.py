"""The quality benchmark runs end to end in a small mode on generated VOC-style and
COCO-style folders."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
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


def _coco_folder(root: Path, n: int = 8) -> Path:
    """The same discs and squares as COCO: images/ + annotations/instances_val.json, with
    non-contiguous category ids and one class (a bar) on a single image: a long tail."""
    from pycocotools import mask as mask_utils

    voc = _voc_folder(root / "_voc", n)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    cat_of = {1: 3, 2: 7}
    images, anns = [], []
    for k, jpg in enumerate(sorted((voc / "JPEGImages").glob("*.jpg")), 1):
        img = np.asarray(Image.open(jpg)).copy()
        mask = np.asarray(Image.open(voc / "SegmentationClass" / f"{jpg.stem}.png"))
        objs = [(cat_of[int(c)], mask == c) for c in (1, 2) if (mask == c).any()]
        if k == 1:  # a bar seen once
            bar = np.zeros(mask.shape, bool)
            bar[80:90, 5:60] = True
            img[bar] = (240, 240, 40)
            objs.append((11, bar))
        Image.fromarray(img).save(root / "images" / jpg.name, quality=95)
        images.append({"id": k, "file_name": jpg.name, "width": 128, "height": 96})
        for cid, m in objs:
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": cid, "iscrowd": 0,
                         "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                         "area": int(m.sum()), "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
    cats = [{"id": 3, "name": "disc"}, {"id": 7, "name": "square"}, {"id": 11, "name": "bar"}]
    doc = {"images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(doc))
    return root


def _bench():
    spec = importlib.util.spec_from_file_location("quality_bench", ROOT / "benchmarks" / "quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_quality_benchmark_small_on_a_coco_folder(tmp_path, capsys):
    bench = _bench()
    data = _coco_folder(tmp_path / "coco")
    out = tmp_path / "out"
    from ewc_fo.models.fit_data import RareClassWarning

    with pytest.warns(RareClassWarning, match=r"bar \(1\)"):
        rc = bench.main(["--data", str(data), "--fit-size", "96", "--explain-size", "128", "--no-plots",
                         "--out", str(out), "--name", "bench-small-coco", "--batch-size", "4",
                         "--explainers", "gradcam,layercam"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "not scored: bar" in printed  # the single-image class is fitted, not scored
    md = (out / "quality.md").read_text()
    assert "| fused |" in md and "| gradcam |" in md and "| disc |" in md and "| square |" in md
    fused = next(line for line in md.splitlines() if line.startswith("| fused |"))
    assert 0.0 <= float(fused.split("|")[3].strip().rstrip("%")) <= 100.0
    # class folders carry no masks: a clear refusal, not a crash
    (tmp_path / "cls" / "disc").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "cls" / "disc" / "a.png")
    assert bench.main(["--data", str(tmp_path / "cls"), "--name", "bench-small-cls", "--out", str(out)]) == 2
    assert "no ground-truth masks" in capsys.readouterr().err
    import fiftyone as fo

    for n in ("bench-small-coco", "bench-small-cls"):
        if fo.dataset_exists(n):
            fo.delete_dataset(n)


def test_quality_benchmark_small(tmp_path, capsys):
    bench = _bench()
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
            "--explain-size", "128", "--workers", "1", "--variants", "default,previous,pamr",
            "--singles", "--out", str(tmp_path / "table.md")]
    assert study.main(args) == 0
    rows = {line.split("|")[1].strip(): line for line in (tmp_path / "table.md").read_text().splitlines()
            if line.startswith(("| default", "| previous", "| pamr"))}
    assert set(rows) == {"default", "previous", "pamr"}
    cells = [c.strip() for c in rows["default"].strip("|").split("|")]
    assert 0.0 <= float(cells[1].rstrip("%")) <= 100.0 and 0.0 <= float(cells[3].rstrip("%")) <= 100.0
    assert cells[2].endswith(")")  # the fused map alone, at its best background threshold
    assert "gradcam" in cells[-1]  # each single explainer has its own mIoU
    refined = [c.strip() for c in rows["pamr"].strip("|").split("|")]
    assert refined[2] == cells[2]  # same fused map: the refinement stage comes after it
    assert "gradcam" in refined[-1]  # singles go through the same refinement
    # the maps are cached: a second run explains nothing and gives the same table
    capsys.readouterr()
    assert study.main(args[:-2]) == 0
    out = capsys.readouterr().out
    assert "explained" not in out and cells[1] in out
    assert study.main(["--data", str(data), "--variants", "nope", "--cache", str(tmp_path / "cache"),
                       "--fit-size", "96", "--explain-size", "128"]) == 2


def test_quality_benchmark_objectness_labels_compares_singles_through_the_same_stage(tmp_path, monkeypatch):
    """With labels from objectness, each explainer's row labels the run's own stored objectness:
    on images with one class every explainer then gives the fused row's label map."""
    from ewc_fo.models.objectness import objectness_available

    if not objectness_available():
        pytest.skip("U²-Net-p not installed (scripts/setup.sh)")
    bench = _bench()
    data = _voc_folder(tmp_path / "voc", n=4)
    out = tmp_path / "out"
    seen = {}
    real = bench.ablations

    def spy(*a, **kw):
        seen.update(kw)
        seen["result"] = real(*a, **kw)
        return seen["result"]

    monkeypatch.setattr(bench, "ablations", spy)
    rc = bench.main(["--data", str(data), "--fit-size", "96", "--explain-size", "128", "--no-plots",
                     "--out", str(out), "--name", "bench-small-obj", "--batch-size", "4",
                     "--explainers", "gradcam,layercam", "--objectness-labels", "0.3"])
    assert rc == 0 and seen["objectness_labels"] == 0.3
    import fiftyone as fo

    ds = fo.load_dataset("bench-small-obj")
    try:
        z = np.load(ds.first()["ewc_maps_path"])
        assert z["objectness"].dtype == np.uint8 and z["objectness"].shape == z["fused"].shape[1:]
        _, seg = seen["result"]
        md = (out / "quality.md").read_text()
        fused = float(next(ln for ln in md.splitlines() if ln.startswith("| fused |")).split("|")[3].strip()
                      .rstrip("%"))
        for name in ("gradcam", "layercam"):  # one class per image: the same label maps as the fused row
            assert 100 * seg[name].miou() == pytest.approx(fused, abs=0.05)
    finally:
        ds.delete()

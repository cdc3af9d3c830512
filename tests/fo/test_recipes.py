"""Every importer on a few generated images: label fields, tags and ground-truth masks."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from ewc_fo.commands import create as create_cmd
from ewc_fo.fo.io import importers as recipes
from ewc_fo.fo.io.export import voc_palette
from ewc_fo.runtime.errors import ConfigError

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def name():
    n = f"t-{uuid.uuid4().hex[:8]}"
    yield n
    if fo.dataset_exists(n):
        fo.delete_dataset(n)


def _img(path: Path, size=(24, 16), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _labels(s, field="labels") -> list[str]:
    v = s[field]
    if v is None:
        return []
    if isinstance(v, fo.Classification):
        return [v.label]
    return [c.label for c in v.classifications]


# ----------------------------------------------------------------------------- folders / CSV


def test_classdirs_with_and_without_splits(tmp_path, name):
    for c in ("cat", "dog"):
        for i in range(2):
            _img(tmp_path / "flat" / c / f"{i}.jpg", seed=i)
            _img(tmp_path / "split" / ("train" if i else "val") / c / f"{i}.png", seed=i)
    (tmp_path / "flat" / "cat" / "notes.txt").write_text("not an image")
    ds = recipes.import_classdirs(name, tmp_path / "flat")
    assert len(ds) == 4 and ds.classes["labels"] == ["cat", "dog"]
    assert ds.get_field("labels").document_type is fo.Classification
    assert all(Path(s.filepath).parent.name == s.labels.label for s in ds)
    ds2 = recipes.import_classdirs(name + "s", tmp_path / "split", label_field="y")
    try:
        assert ds2.count_sample_tags() == {"train": 2, "val": 2}
        assert ds2.count_values("y.label") == {"cat": 2, "dog": 2}
    finally:
        ds2.delete()
    with pytest.raises(ConfigError, match="already exists"):
        recipes.import_classdirs(name, tmp_path / "flat")
    assert len(recipes.import_classdirs(name, tmp_path / "flat", overwrite=True, max_samples=3)) == 3


def test_csv_single_and_multi_label(tmp_path, name):
    _img(tmp_path / "im" / "a.png")
    _img(tmp_path / "im" / "b.png")
    (tmp_path / "single.csv").write_text("filepath,label\nim/a.png,cat\nim/b.png,dog\nim/missing.png,cat\n")
    ds = recipes.import_csv(name, tmp_path / "single.csv")
    assert len(ds) == 2 and ds.get_field("labels").document_type is fo.Classification
    assert {Path(s.filepath).name: s.labels.label for s in ds} == {"a.png": "cat", "b.png": "dog"}
    (tmp_path / "multi.csv").write_text(f"{tmp_path / 'im' / 'a.png'},cat;dog\nim/b.png,dog | bird\n")
    ds2 = recipes.import_csv(name + "m", tmp_path / "multi.csv")
    try:
        assert ds2.get_field("labels").document_type is fo.Classifications
        got = {Path(s.filepath).name: _labels(s) for s in ds2}
        assert got == {"a.png": ["cat", "dog"], "b.png": ["dog", "bird"]}
    finally:
        ds2.delete()


def test_folder_with_labels_json(tmp_path, name):
    _img(tmp_path / "f" / "x.jpg")
    _img(tmp_path / "f" / "sub" / "y.jpg")
    _img(tmp_path / "f" / "z.jpg")
    (tmp_path / "f" / "labels.json").write_text(json.dumps({"x": ["cat", "dog"], "sub/y.jpg": ["dog"]}))
    ds = recipes.import_folder(name, tmp_path / "f")
    got = {Path(s.filepath).name: _labels(s) for s in ds}
    assert got == {"x.jpg": ["cat", "dog"], "y.jpg": ["dog"], "z.jpg": []}


# ----------------------------------------------------------------------------- VOC


def _voc_folder(root: Path) -> dict[str, np.ndarray]:
    masks = {}
    for i, cls in enumerate([(1, 15), (12,), (7, 15)]):
        iid = f"2007_00000{i}"
        _img(root / "JPEGImages" / f"{iid}.jpg", size=(20, 14), seed=i)
        m = np.zeros((14, 20), np.uint8)
        for k, c in enumerate(cls):
            m[2 + 5 * k : 6 + 5 * k, 3:12] = c
        m[1, :] = 255  # void border
        im = Image.fromarray(m, mode="P")
        im.putpalette(voc_palette())
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        im.save(root / "SegmentationClass" / f"{iid}.png")
        masks[iid] = m
    _img(root / "JPEGImages" / "not_in_sets.jpg")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000000\n2007_000001\n")
    (sets / "val.txt").write_text("2007_000002\n")
    return masks


def test_voc_folder(tmp_path, name):
    masks = _voc_folder(tmp_path / "voc")
    ds = recipes.import_voc(name, tmp_path / "voc", media_dir=tmp_path / "media")
    assert len(ds) == 3
    assert ds.count_sample_tags() == {"train": 2, "val": 1}
    assert ds.mask_targets["ground_truth"][15] == "person" and 255 not in ds.mask_targets["ground_truth"]
    assert len(ds.mask_targets["ground_truth"]) == 21
    want = {"2007_000000": ["aeroplane", "person"], "2007_000001": ["dog"], "2007_000002": ["car", "person"]}
    for s in ds:
        iid = Path(s.filepath).stem
        assert sorted(_labels(s)) == want[iid]
        gt = s.ground_truth.get_mask()
        assert gt.ndim == 2 and np.array_equal(gt, masks[iid])  # indices, not palette colours
        assert str(tmp_path / "media") in s.ground_truth.mask_path
    # sources are referenced in place, never copied
    assert all(str(tmp_path / "voc" / "JPEGImages") in fp for fp in ds.values("filepath"))
    # image metadata is filled at import (the App shows sizes)
    assert {(m.width, m.height) for m in ds.values("metadata")} == {(20, 14)}


# ----------------------------------------------------------------------------- COCO


def test_coco_json(tmp_path, name):
    h, w = 20, 30
    _img(tmp_path / "c" / "data" / "one.jpg", size=(w, h))
    _img(tmp_path / "c" / "data" / "two.jpg", size=(w, h), seed=1)
    big = np.zeros((h, w), np.uint8)
    big[2:18, 2:20] = 1
    small = np.zeros((h, w), np.uint8)
    small[5:9, 5:9] = 1
    rle = mask_utils.encode(np.asfortranarray(big))
    rle["counts"] = rle["counts"].decode()
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "segmentation": rle, "area": int(big.sum()),
         "bbox": [2, 2, 18, 16], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 18, "segmentation": [[5, 5, 9, 5, 9, 9, 5, 9]],
         "area": 16, "bbox": [5, 5, 4, 4], "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 18, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
    ]  # fmt: skip
    doc = {
        "images": [{"id": 1, "file_name": "one.jpg", "width": w, "height": h},
                   {"id": 2, "file_name": "two.jpg", "width": w, "height": h}],
        "annotations": anns,
        "categories": [{"id": 3, "name": "car"}, {"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
    }  # fmt: skip
    (tmp_path / "c" / "labels.json").write_text(json.dumps(doc))
    ds = recipes.import_coco(name, tmp_path / "c" / "labels.json", media_dir=tmp_path / "m")
    assert ds.mask_targets["ground_truth"] == {0: "background", 1: "person", 3: "car", 18: "dog"}
    one, two = ds.sort_by("filepath")
    assert sorted(_labels(one)) == ["car", "dog"] and _labels(two) == ["dog"]
    sem = one.ground_truth.get_mask()
    want = np.where(big == 1, 3, 0)
    want[np.asarray(mask_utils.decode(mask_utils.frPyObjects([[5, 5, 9, 5, 9, 9, 5, 9]], h, w))).any(-1)] = 18
    assert np.array_equal(sem, want)  # the small dog is drawn over the car
    dets = one.ground_truth_instances.detections
    assert [d.label for d in dets] == ["car", "dog"]
    from ewc_fo.fo.io.export import paste_instance

    assert np.array_equal(paste_instance(dets[0], w, h), big.astype(bool))
    assert two.ground_truth_instances.detections[0].mask is None
    assert not two.ground_truth.get_mask().any()


def test_coco_folder_layouts_and_auto_detection(tmp_path, name):
    """A COCO folder: images/ + annotations/instances_*.json (or a FiftyOne export's
    labels.json next to data/), found from the folder alone."""
    h, w = 12, 16
    root = tmp_path / "coco"
    _img(root / "images" / "a.jpg", size=(w, h))
    box = {"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": h}],
           "annotations": [box], "categories": [{"id": 5, "name": "cow"}]}  # fmt: skip
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val.json").write_text(json.dumps(doc))
    assert recipes.detect_source(root) == "coco"
    ds = recipes.import_source("auto", name, root, media_dir=tmp_path / "m")
    assert _labels(ds.first()) == ["cow"] and ds.first().metadata.width == w
    export = tmp_path / "export"
    _img(export / "data" / "a.jpg", size=(w, h))
    (export / "labels.json").write_text(json.dumps(doc))
    assert recipes.detect_source(export) == "coco"
    assert len(recipes.import_coco(name, export, overwrite=True, media_dir=tmp_path / "m")) == 1
    # the folder layout's labels.json is not COCO
    (tmp_path / "f" / "labels.json").parent.mkdir()
    (tmp_path / "f" / "labels.json").write_text(json.dumps({"x": "cat"}))
    assert recipes.detect_source(tmp_path / "f") == "folder"
    (root / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="several COCO files"):
        recipes.import_coco(name, root, overwrite=True)
    with pytest.raises(ConfigError, match="do not apply to a voc source"):
        recipes.import_source("voc", name, root, images_dir=root)


# ----------------------------------------------------------------------------- Hugging Face


def _hf_dataset(multi: bool = False):
    import datasets

    imgs = [Image.fromarray(np.full((12, 10, 3), 40 * i, np.uint8)) for i in range(4)]
    if multi:
        feats = datasets.Features({"img": datasets.Image(), "tags": datasets.List(datasets.ClassLabel(names=["a", "b", "c"]))})
        return datasets.Dataset.from_dict({"img": imgs, "tags": [[0], [1, 2], [], [2]]}, features=feats)
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"]), "x": datasets.Value("int32")})
    return datasets.Dataset.from_dict({"image": imgs, "label": [0, 1, 1, -1], "x": [1, 2, 3, 4]}, features=feats)


def test_hf_in_memory_disk_and_parquet(tmp_path, name):
    hf = _hf_dataset()
    ds = recipes.import_hf(name, hf, media_dir=tmp_path / "m")
    assert len(ds) == 4 and ds.get_field("labels").document_type is fo.Classification
    assert ds.values("labels.label") == ["cat", "dog", "dog", None]
    first = np.asarray(Image.open(ds.first().filepath))
    assert first.shape == (12, 10, 3) and str(tmp_path / "m" / "images") in ds.first().filepath

    hf.save_to_disk(str(tmp_path / "disk"))
    d2 = recipes.import_hf(name + "d", tmp_path / "disk", media_dir=tmp_path / "m2", max_samples=2)
    hf.to_parquet(str(tmp_path / "p.parquet"))
    d3 = recipes.import_hf(name + "p", tmp_path / "p.parquet", media_dir=tmp_path / "m3")
    try:
        assert d2.values("labels.label") == ["cat", "dog"]
        assert d3.values("labels.label") == ["cat", "dog", "dog", None]
    finally:
        d2.delete()
        d3.delete()


def test_hf_multilabel_and_errors(tmp_path, name):
    import datasets

    ds = recipes.import_hf(name, datasets.DatasetDict({"test": _hf_dataset(multi=True)}), split="test",
                           media_dir=tmp_path / "m")  # fmt: skip
    assert ds.get_field("labels").document_type is fo.Classifications
    assert [_labels(s) for s in ds] == [["a"], ["b", "c"], [], ["c"]]
    assert ds.count_sample_tags() == {"test": 4}
    with pytest.raises(ConfigError, match="no Image feature"):
        recipes.import_hf(name + "x", datasets.Dataset.from_dict({"a": [1]}))
    with pytest.raises(ConfigError):
        recipes.import_hf(name + "y", _hf_dataset(), label_key="nope")


# ----------------------------------------------------------------------------- CUB


def test_cub(tmp_path, name):
    root = tmp_path / "CUB_200_2011"
    rels = ["001.Black_footed_Albatross/a_1.jpg", "002.Laysan_Albatross/b_2.jpg"]
    for i, rel in enumerate(rels):
        _img(root / "images" / rel, size=(16, 12), seed=i)
    (root / "images.txt").write_text("".join(f"{i + 1} {r}\n" for i, r in enumerate(rels)))
    (root / "image_class_labels.txt").write_text("1 1\n2 2\n")
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n")
    soft = np.zeros((12, 16), np.uint8)
    soft[2:8, 3:10] = 255
    soft[8:10, 3:10] = 102  # only 2 of 5 annotators: background
    seg = tmp_path / "segmentations" / "001.Black_footed_Albatross"
    seg.mkdir(parents=True)
    Image.fromarray(soft).save(seg / "a_1.png")
    ds = recipes.import_cub(name, root, media_dir=tmp_path / "m")
    a, b = ds.sort_by("filepath")
    assert a.labels.label == "Black_footed_Albatross" and b.labels.label == "Laysan_Albatross"
    assert a.tags == ["train"] and b.tags == ["test"]
    assert np.array_equal(a.ground_truth.get_mask(), np.where(soft >= 128, 1, 0))
    assert b.ground_truth is None
    assert ds.mask_targets["ground_truth"] == {0: "background", 1: "Black_footed_Albatross", 2: "Laysan_Albatross"}
    with pytest.raises(ConfigError, match="CUB"):
        recipes.import_cub(name + "x", tmp_path)


# ----------------------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    create_cmd.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_create_command(tmp_path, name, capsys):
    _voc_folder(tmp_path / "voc")
    assert _cli(["create", name, "--from", "voc", str(tmp_path / "voc"), "--media-dir", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "3 images" in out and "ground_truth" in out
    assert fo.load_dataset(name).persistent
    with pytest.raises(ConfigError):
        _cli(["create", name, "--from", "voc", str(tmp_path / "voc")])
    with pytest.raises(ConfigError, match="no images"):
        _cli(["create", name + "e", "--from", "classdirs", str(tmp_path / "voc" / "ImageSets")])
    assert _cli(["create", name + "a", "--from", "auto", str(tmp_path / "voc"), "--media-dir", str(tmp_path / "m")]) == 0
    ds = fo.load_dataset(name + "a")
    assert ds.info["ewc_import"]["kind"] == "voc" and ds.first().metadata.width == 20
    ds.delete()


def test_recipe_script_runs(tmp_path, name):
    import subprocess
    import sys

    for c in ("cat", "dog"):
        _img(tmp_path / "d" / c / "0.png")
    script = Path(__file__).resolve().parents[2] / "recipes" / "classdirs.py"
    r = subprocess.run([sys.executable, str(script), name, str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "2 images, 2 classes" in r.stdout and f"ewc-fo export {name} --format coco" in r.stdout
    r = subprocess.run([sys.executable, str(script), name, str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "already exists" in r.stderr

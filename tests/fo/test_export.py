"""Export round trips: COCO (pycocotools + FiftyOne importer) and VOC (PIL + FiftyOne importer)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import fiftyone as fo
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from ewc_fo.fo.io.export import (
    export,
    export_coco,
    export_voc,
    paste_instance,
    safe_name,
    voc_colormap,
)
from ewc_fo.runtime.errors import ConfigError

P = "ewc"
TARGETS = {1: "cat", 2: "fox"}
H, W = 30, 40


def _instance(full: np.ndarray, label: str, conf: float) -> fo.Detection:
    ys, xs = np.nonzero(full)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    h, w = full.shape
    return fo.Detection(
        label=label,
        bounding_box=[x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h],
        mask=full[y0:y1, x0:x1].copy(),
        confidence=conf,
    )


def _objects(seed: int, names=("cat", "fox")) -> list[tuple[str, np.ndarray, float]]:
    """A cat rectangle and a fox ring (a hole, so polygons would lose detail); fox is not a VOC
    class, so exports keep the run's own ids."""
    rng = np.random.default_rng(seed)
    cat = np.zeros((H, W), bool)
    y, x = int(rng.integers(2, 8)), int(rng.integers(2, 8))
    cat[y : y + 9, x : x + 12] = True
    yy, xx = np.mgrid[:H, :W]
    r = np.hypot(yy - 18, xx - 28)
    dog = (r < 8) & (r >= 3)
    dog &= ~cat
    return [(names[0], cat, 0.9), (names[1], dog, 0.4 + 0.1 * seed)]


def _add(ds, tmp: Path, rel: str, seed: int, tags=(), conf=0.8, instances=True, semantic=True,
         targets=TARGETS):
    img_path = tmp / "imgs" / rel
    img_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(img_path)
    objs = _objects(seed, tuple(targets.values()))
    label_map = np.zeros((H, W), np.uint8)
    for name, m, _ in objs:
        label_map[m] = {v: k for k, v in targets.items()}[name]
    s = fo.Sample(filepath=str(img_path), tags=list(tags))
    if semantic:
        mp = tmp / "masks" / f"{seed}.png"
        mp.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(label_map).save(mp)
        s[f"{P}_mask"] = fo.Segmentation(mask_path=str(mp))
    if instances:
        s[f"{P}_instances"] = fo.Detections(detections=[_instance(m, n, c) for n, m, c in objs])
    s[f"{P}_confidence"] = conf
    ds.add_sample(s)
    return s, label_map, objs


@pytest.fixture
def run_ds(tmp_path):
    ds = fo.Dataset()
    ds.mask_targets = {f"{P}_mask": TARGETS}
    truth = {}
    # two source files share the basename img.png
    for seed, rel, tags in [
        (1, "a/img.png", ["ewc:reviewed"]),
        (2, "b/img.png", []),
        (3, "c/other.png", ["ewc:reject"]),
        (4, "d/four.png", ["ewc:reviewed"]),
    ]:
        s, lm, objs = _add(ds, tmp_path, rel, seed, tags)
        truth[s.filepath] = (lm, objs)
    yield ds, truth
    ds.delete()


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- COCO


def test_coco_round_trip_pycocotools(run_ds, tmp_path):
    ds, truth = run_ds
    calls = []
    out = tmp_path / "coco"
    res = export_coco(ds, out, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]  # per sample; the rejected one is filtered before counting
    assert res.num_images == 3 and res.num_instances == 6
    gt = COCO(str(out / "labels.json"))
    assert {c["id"]: c["name"] for c in gt.dataset["categories"]} == TARGETS
    names = sorted(i["file_name"] for i in gt.dataset["images"])
    assert names == ["four.png", "img-2.png", "img.png"]
    by_name = {}
    for fp in truth:
        if "other" not in fp:
            by_name.setdefault(Path(fp).name, []).append(fp)
    for img in gt.dataset["images"]:
        copied = out / "data" / img["file_name"]
        assert copied.is_file() and (img["width"], img["height"]) == (W, H)
        # the copied bytes identify which source this is
        src = next(fp for fp in truth if Path(fp).read_bytes() == copied.read_bytes())
        _, objs = truth[src]
        anns = gt.loadAnns(gt.getAnnIds(imgIds=img["id"]))
        assert len(anns) == len(objs)
        for ann, (name, m, conf) in zip(anns, objs):
            assert gt.cats[ann["category_id"]]["name"] == name
            assert isinstance(ann["segmentation"]["counts"], str)
            back = gt.annToMask(ann).astype(bool)
            assert np.array_equal(back, m)
            ys, xs = np.nonzero(m)
            assert ann["area"] == m.sum()
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["iscrowd"] == 0 and ann["score"] == pytest.approx(conf)


def test_coco_round_trip_fiftyone_importer(run_ds, tmp_path):
    ds, truth = run_ds
    out = tmp_path / "coco"
    export_coco(ds, out)
    back = fo.Dataset.from_dir(
        dataset_type=fo.types.COCODetectionDataset,
        data_path=str(out / "data"),
        labels_path=str(out / "labels.json"),
        label_types=["segmentations"],
    )
    try:
        assert len(back) == 3
        field = next(k for k, v in back.get_field_schema().items() if getattr(v, "document_type", None) is fo.Detections)
        assert back.count(f"{field}.detections") == 6
        assert back.count_values(f"{field}.detections.label") == {"cat": 3, "fox": 3}
        for s in back:
            src = next(fp for fp in truth if Path(fp).read_bytes() == Path(s.filepath).read_bytes())
            for det, (name, m, _) in zip(s[field].detections, truth[src][1]):
                assert det.label == name
                assert np.array_equal(paste_instance(det, W, H), m)
    finally:
        back.delete()


def test_coco_category_ids_stable_and_referenced_images(run_ds, tmp_path):
    ds, truth = run_ds
    # a view with only foxes in its instances still gets the run's ids
    only_dog = ds.filter_labels(f"{P}_instances", fo.ViewField("label") == "fox")
    export_coco(only_dog.select_fields([f"{P}_instances", f"{P}_confidence"]), tmp_path / "a", copy_images=False)
    export_coco(ds, tmp_path / "b")
    a = json.loads((tmp_path / "a" / "labels.json").read_text())
    b = json.loads((tmp_path / "b" / "labels.json").read_text())
    assert a["categories"] == b["categories"]
    dog_id = {c["name"]: c["id"] for c in b["categories"]}["fox"]
    assert {x["category_id"] for x in a["annotations"]} == {dog_id}
    assert not (tmp_path / "a" / "data").exists()
    assert {i["file_name"] for i in a["images"]} <= set(truth)


def test_coco_ids_from_mask_targets_not_appearance(tmp_path):
    ds = fo.Dataset()
    ds.mask_targets = {f"{P}_mask": {7: "zebra", 3: "ant"}}
    lm = np.zeros((H, W), np.uint8)
    lm[2:10, 2:10] = 7
    img = tmp_path / "z.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(img)
    Image.fromarray(lm).save(tmp_path / "z_mask.png")
    ds.add_sample(fo.Sample(filepath=str(img), **{f"{P}_mask": fo.Segmentation(mask_path=str(tmp_path / "z_mask.png"))}))
    export_coco(ds, tmp_path / "out")
    d = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert [(c["id"], c["name"]) for c in d["categories"]] == [(3, "ant"), (7, "zebra")]
    assert [a["category_id"] for a in d["annotations"]] == [7]
    ds.delete()


def test_coco_instances_from_semantic_mask_components(tmp_path):
    ds = fo.Dataset()
    ds.mask_targets = {f"{P}_mask": TARGETS}
    truth = _add(ds, tmp_path, "s.png", 5, instances=False)[1]
    # a second, separate cat blob becomes its own instance
    truth[25:28, 2:6] = 1
    Image.fromarray(truth).save(ds.first()[f"{P}_mask"].mask_path)
    export_coco(ds, tmp_path / "out")
    gt = COCO(str(tmp_path / "out" / "labels.json"))
    anns = gt.loadAnns(gt.getAnnIds())
    assert sorted(a["category_id"] for a in anns) == [1, 1, 2]
    rebuilt = np.zeros_like(truth)
    for a in anns:
        rebuilt[gt.annToMask(a).astype(bool)] = a["category_id"]
    assert np.array_equal(rebuilt, truth)
    ds.delete()


def test_coco_polygons(run_ds, tmp_path):
    ds, _ = run_ds
    export_coco(ds, tmp_path / "p", polygons=True)
    export_coco(ds, tmp_path / "r")
    gp, gr = COCO(str(tmp_path / "p" / "labels.json")), COCO(str(tmp_path / "r" / "labels.json"))
    for ap, ar in zip(gp.dataset["annotations"], gr.dataset["annotations"]):
        assert isinstance(ap["segmentation"], list)
        assert ap["area"] == ar["area"] and ap["bbox"] == ar["bbox"]
        mp, mr = gp.annToMask(ap).astype(bool), gr.annToMask(ar).astype(bool)
        assert (mp & mr).sum() / (mp | mr).sum() > 0.6


# ----------------------------------------------------------------------------- review tags, folders, paths


def test_review_tags(run_ds, tmp_path):
    ds, _ = run_ds
    assert export_coco(ds, tmp_path / "r", reviewed_only=True).num_images == 2
    assert export_coco(ds, tmp_path / "all", skip_rejected=False).num_images == 4
    assert export_voc(ds, tmp_path / "v", reviewed_only=True).num_images == 2


def test_non_empty_target_needs_overwrite(run_ds, tmp_path):
    ds, _ = run_ds
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        export_coco(ds, out)
    export_coco(ds, out, overwrite=True)
    (out / "data" / "stale.png").write_bytes(b"x")
    export_coco(ds, out, overwrite=True)
    # overwrite deletes only what the previous export wrote (its manifest): the user's files stay
    assert (out / "data" / "stale.png").exists() and (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError):
        export_voc(ds, out)
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError):
        export_voc(ds, tmp_path / "afile")


def test_paths_from_labels_and_names_stay_inside(tmp_path):
    assert "/" not in safe_name("../../evil") and not safe_name("../../evil").startswith(".")
    assert safe_name("..") == "item"
    ds = fo.Dataset()
    evil = "../../evil"
    ds.mask_targets = {f"{P}_mask": {1: evil}}
    sub = tmp_path / "src" / "deep"
    sub.mkdir(parents=True)
    img = sub / "..evil name?.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(img)
    lm = np.zeros((H, W), np.uint8)
    lm[3:9, 3:9] = 1
    Image.fromarray(lm).save(sub / "m.png")
    s = fo.Sample(filepath=str(img))
    s[f"{P}_mask"] = fo.Segmentation(mask_path=str(sub / "m.png"))
    s[f"{P}_instances"] = fo.Detections(detections=[_instance(lm == 1, evil, 0.9)])
    ds.add_sample(s)
    before = _files(tmp_path)
    out = tmp_path / "x" / "out"
    export_coco(ds, out / "coco")
    with pytest.raises(ConfigError, match="not a plain name"):  # refused, not renamed (issue 23)
        export_voc(ds, out / "voc", split="../../evil")
    export_voc(ds, out / "voc", split="evil")
    after = _files(tmp_path) - before
    assert after and all(out in p.parents for p in after)
    assert all(".." not in p.name for p in after)
    assert (out / "voc" / "class_names.txt").read_text().splitlines() == ["background", evil]
    ds.delete()


# ----------------------------------------------------------------------------- VOC


def test_voc_round_trip(run_ds, tmp_path):
    ds, truth = run_ds
    out = tmp_path / "voc"
    res = export_voc(ds, out, split="train")
    assert res.num_images == 3 and res.num_instances == 6
    assert (out / "class_names.txt").read_text().splitlines() == ["background", "cat", "fox"]
    assert (out / "labels.txt").read_text() == (out / "class_names.txt").read_text()
    ids = (out / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert sorted(ids) == ["four", "img", "img-2"]
    cmap = voc_colormap()
    assert cmap[1].tolist() == [128, 0, 0] and cmap[2].tolist() == [0, 128, 0] and cmap[255].tolist() == [224, 224, 192]
    for i in ids:
        jpg = out / "JPEGImages" / f"{i}.jpg"
        with Image.open(jpg) as im:
            assert im.format == "JPEG" and im.size == (W, H)
        cls_im = Image.open(out / "SegmentationClass" / f"{i}.png")
        obj_im = Image.open(out / "SegmentationObject" / f"{i}.png")
        assert cls_im.mode == "P" and obj_im.mode == "P"
        assert cls_im.getpalette()[:768] == cmap.reshape(-1).tolist()
        cls, obj = np.asarray(cls_im), np.asarray(obj_im)
        matches = [fp for fp, (lm, _) in truth.items() if np.array_equal(lm, cls)]
        assert len(matches) == 1
        for k, (_, m, _) in enumerate(truth[matches[0]][1], 1):
            assert np.array_equal(obj == k, m)
        assert set(np.unique(obj)) <= {0, 1, 2}

    # FiftyOne reads the palette PNGs back as VOC colours
    back = fo.Dataset.from_dir(
        dataset_type=fo.types.ImageSegmentationDirectory,
        data_path=str(out / "JPEGImages"),
        labels_path=str(out / "SegmentationClass"),
        load_masks=True,
    )
    try:
        assert len(back) == 3
        lms = [lm for fp, (lm, _) in truth.items() if "other" not in fp]
        for s in back:
            rgb = s.ground_truth.mask
            assert rgb.ndim == 3
            idx = np.zeros(rgb.shape[:2], np.uint8)
            for k in range(3):
                idx[(rgb == cmap[k]).all(-1)] = k
            assert any(np.array_equal(idx, lm) for lm in lms)
    finally:
        back.delete()


def test_voc_uncertainty(tmp_path):
    ds = fo.Dataset()
    ds.mask_targets = {f"{P}_mask": TARGETS}
    _, lm, objs = _add(ds, tmp_path, "u.png", 1, conf=0.8)  # dog confidence 0.5
    _add(ds, tmp_path, "low.png", 2, conf=0.1)
    res = export_voc(ds, tmp_path / "band", uncertain_band=1)
    cls = np.asarray(Image.open(tmp_path / "band" / "SegmentationClass" / "u.png"))
    obj = np.asarray(Image.open(tmp_path / "band" / "SegmentationObject" / "u.png"))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))  # pixels within 1 px (4-neighbours)
    band = cv2.dilate(lm, k) != cv2.erode(lm, k)
    assert np.array_equal(cls == 255, band)
    assert np.array_equal(cls[~band], lm[~band])
    assert (obj[band] == 255).all()
    assert res.num_images == 2

    export_voc(ds, tmp_path / "conf", min_confidence=0.7)
    cls = np.asarray(Image.open(tmp_path / "conf" / "SegmentationClass" / "u.png"))
    dog = objs[1][1]
    assert (cls[dog] == 255).all() and np.array_equal(cls[~dog], lm[~dog])
    low = np.asarray(Image.open(tmp_path / "conf" / "SegmentationClass" / "low.png"))
    assert (low == 255).all()
    ds.delete()


def test_voc_from_instances_only_and_dispatch(tmp_path):
    ds = fo.Dataset()
    _, lm, _ = _add(ds, tmp_path, "i.png", 3, semantic=False)
    res = export(ds, tmp_path / "v", "voc")
    assert res.classes == ["cat", "fox"]
    cls = np.asarray(Image.open(tmp_path / "v" / "SegmentationClass" / "i.png"))
    assert np.array_equal(cls, lm)
    with pytest.raises(ConfigError):
        export(ds, tmp_path / "w", "yolo")
    with pytest.raises(ConfigError, match="prefix"):
        export_coco(ds, tmp_path / "w", prefix="nope")
    ds.delete()


def test_export_command(run_ds, tmp_path, capsys):
    import argparse

    from ewc_fo.commands import export as export_cmd

    ds, _ = run_ds
    ds.persistent = True
    ds.save_view("firsts", ds.match_tags("ewc:reviewed"))
    parser = argparse.ArgumentParser()
    export_cmd.add_parser(parser.add_subparsers())

    def cli(*argv):
        args = parser.parse_args(["export", ds.name, *argv])
        return args.func(args)

    assert cli("--format", "voc", "--out", str(tmp_path / "v"), "--uncertain-band", "2") == 0
    got = capsys.readouterr()
    assert "VOC export: 3 images" in got.out
    # a per-sample bar with its rate, even when stderr is not a terminal (issue 22 item 9)
    assert "VOC export: 100%" in got.err and "3/3" in got.err and "img/s" in got.err
    assert cli("--format", "coco", "--out", str(tmp_path / "c"), "--view", "firsts", "--polygons") == 0
    assert "COCO export: 2 images" in capsys.readouterr().out
    assert cli("--format", "coco", "--out", str(tmp_path / "c"), "--include-rejected", "--overwrite") == 0
    assert "4 images" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="not empty"):
        cli("--format", "coco", "--out", str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="voc only"):
        cli("--format", "coco", "--out", str(tmp_path / "d"), "--uncertain-band", "1")


# ----------------------------------------------------------------------------- class ids


def _voc_run(tmp_path, targets):
    """A run whose classes are VOC's (its own ids 1, 2: the order it met them)."""
    ds = fo.Dataset()
    ds.mask_targets = {f"{P}_mask": targets}
    for seed in (1, 2):
        _add(ds, tmp_path, f"v{seed}.png", seed, targets=targets)
    return ds


def test_voc_export_uses_voc_ids_for_voc_classes(tmp_path):
    ds = _voc_run(tmp_path, {1: "cat", 2: "train"})  # the run met cat and train only: ids 1, 2
    for out, kw in [(tmp_path / "default", {}), (tmp_path / "voc", {"classes": "voc"})]:
        res = export_voc(ds, out, **kw)
        names = (out / "class_names.txt").read_text().splitlines()
        assert len(names) == 21 and names[8] == "cat" and names[19] == "train"
        assert res.classes == names[1:]
        cls = np.asarray(Image.open(out / "SegmentationClass" / "v1.png"))
        objs = _objects(1)
        assert (cls[objs[0][1]] == 8).all() and (cls[objs[1][1]] == 19).all()
        assert set(np.unique(cls)) <= {0, 8, 19}
    # COCO takes the same list on request; by default it keeps the run's ids
    export_coco(ds, tmp_path / "coco", classes="voc", copy_images=False)
    js = json.loads((tmp_path / "coco" / "labels.json").read_text())
    assert len(js["categories"]) == 20 and {a["category_id"] for a in js["annotations"]} == {8, 19}
    ds.delete()


def test_classes_from_a_file_or_mask_targets(run_ds, tmp_path):
    ds, _ = run_ds
    (tmp_path / "names.txt").write_text("background\nfox\nowl\ncat\n")
    export_voc(ds, tmp_path / "f", classes=str(tmp_path / "names.txt"))
    assert (tmp_path / "f" / "class_names.txt").read_text().splitlines() == ["background", "fox", "owl", "cat"]
    cls = np.asarray(Image.open(next((tmp_path / "f" / "SegmentationClass").glob("*.png"))))
    assert set(np.unique(cls)) <= {0, 1, 3} and 3 in cls
    ds.mask_targets = {**ds.mask_targets, "ground_truth": {0: "background", 5: "cat", 7: "fox"}}
    ds.save()
    res = export_coco(ds, tmp_path / "gt", classes="ground_truth", copy_images=False)
    js = json.loads((tmp_path / "gt" / "labels.json").read_text())
    assert {c["id"]: c["name"] for c in js["categories"]} == {5: "cat", 7: "fox"} and res.classes == ["cat", "fox"]
    with pytest.raises(ConfigError, match="not in the class list"):
        export_voc(ds, tmp_path / "x", classes="voc")  # fox is not a VOC class
    with pytest.raises(ConfigError, match="not 'voc', a file"):
        export_voc(ds, tmp_path / "y", classes="nope")


def test_coco_instances_do_not_overlap(tmp_path):
    """Two classes' instances overlap in the run; the label map decides who owns the overlap,
    and same-class overlaps go to the more confident instance."""
    ds = fo.Dataset()
    ds.mask_targets = {f"{P}_mask": TARGETS}
    s, lm, objs = _add(ds, tmp_path, "o.png", 1)
    cat, fox = objs[0][1], objs[1][1]
    grown_fox = fox | np.roll(cat, 2, axis=1)  # the fox instance spills over the cat
    cat2 = np.zeros_like(cat)
    cat2[20:28, 2:10] = True
    cat3 = np.roll(cat2, 3, axis=1)  # a second, less confident cat overlapping the first
    s[f"{P}_instances"] = fo.Detections(detections=[
        _instance(cat, "cat", 0.9), _instance(grown_fox, "fox", 0.95),
        _instance(cat2, "cat", 0.8), _instance(cat3, "cat", 0.3),
    ])
    s.save()
    export_coco(ds, tmp_path / "c", copy_images=False)
    coco = COCO(str(tmp_path / "c" / "labels.json"))
    masks = [coco.annToMask(a).astype(bool) for a in coco.dataset["annotations"]]
    assert len(masks) == 4
    assert np.stack(masks).sum(0).max() == 1  # one instance per pixel
    assert np.array_equal(masks[0], cat)  # the label map says cat where the fox spilled
    assert np.array_equal(masks[2], cat2) and np.array_equal(masks[3], cat3 & ~cat2)
    # on request the overlaps stay
    export_coco(ds, tmp_path / "o", copy_images=False, overlapping=True)
    coco = COCO(str(tmp_path / "o" / "labels.json"))
    assert np.stack([coco.annToMask(a) for a in coco.dataset["annotations"]]).sum(0).max() == 2
    ds.delete()


def test_export_command_classes_and_selection(run_ds, tmp_path, capsys):
    import argparse

    from ewc_fo.commands import export as export_cmd

    ds, _ = run_ds
    ds.persistent = True
    parser = argparse.ArgumentParser()
    export_cmd.add_parser(parser.add_subparsers())

    def cli(*argv):
        args = parser.parse_args(["export", ds.name, *argv])
        return args.func(args)

    (tmp_path / "names.txt").write_text("background\nowl\ncat\nfox\n")
    assert cli("--format", "voc", "--out", str(tmp_path / "v"), "--classes", str(tmp_path / "names.txt"),
               "--limit", "1") == 0
    assert "VOC export: 1 images" in capsys.readouterr().out
    assert (tmp_path / "v" / "class_names.txt").read_text().split() == ["background", "owl", "cat", "fox"]
    assert cli("--format", "coco", "--out", str(tmp_path / "c"), "--tags", "ewc:reviewed",
               "--overlapping-masks") == 0
    assert "COCO export: 2 images" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="not in the class list"):
        cli("--format", "voc", "--out", str(tmp_path / "w"), "--classes", "voc")
    with pytest.raises(ConfigError, match="coco only"):
        cli("--format", "voc", "--out", str(tmp_path / "w"), "--overlapping-masks")


def test_a_huge_uncertain_band_voids_every_pixel_of_a_map_with_a_boundary():
    """Issue 23: `--uncertain-band 1000000` (within the CLI's bound) was a cv2 error on the kernel
    size; a band at least h+w wide reaches every pixel from every pixel."""
    from ewc_fo.fo.io.mask_codecs import _band

    m = np.zeros((6, 8), np.uint8)
    m[2:4, 3:5] = 1
    assert _band(m, 10**6).all() and _band(m, 6 + 8 - 1).all()  # the shortcut agrees with cv2 next to it
    assert not _band(np.zeros((6, 8), np.uint8), 10**6).any()

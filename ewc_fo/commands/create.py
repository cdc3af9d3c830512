"""``ewc-fo create``: build a FiftyOne dataset with image-level labels from a common layout."""

from __future__ import annotations

from ewc_fo.commands import _checks as chk
from ewc_fo.commands._common import required_group

SOURCES = {
    "auto": "tell the format from the path's layout",
    "folder": "folder of images (recursive) + optional labels.json {image: label | [labels]}",
    "classdirs": "ImageNet style ROOT/<class>/*.jpg, or ROOT/<split>/<class>/*.jpg",
    "csv": "CSV of filepath,label(s); several labels separated by ; or |",
    "voc": "VOC-style folder: JPEGImages/, SegmentationClass/, ImageSets/Segmentation/",
    "coco": "COCO instances JSON, or a folder with one (images in data/ or images/ next to it)",
    "hf": "Hugging Face dataset: hub name, save_to_disk folder, parquet file(s) or data folder",
    "cub": "CUB-200-2011 folder (images/, images.txt, classes.txt, ...; segmentations/ if present)",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "create",
        help="create a FiftyOne dataset with image-level labels from a folder, CSV, VOC, COCO, HF or CUB",
        description="Sources:\n" + "\n".join(f"  {k:10s} {v}" for k, v in SOURCES.items()),
    )
    req = required_group(p)
    req.add_argument("name", help="name of the new FiftyOne dataset")
    req.add_argument("--from", dest="source", required=True, choices=list(SOURCES),
                     help="kind of source (see Sources above)")
    req.add_argument("path", help="folder, file or Hugging Face dataset name to import")
    p.add_argument("--label-field", default="labels", help="field for the image-level labels (default: labels)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    p.add_argument("--max-samples", type=chk.positive_int, default=None, help="import at most this many images")
    p.add_argument("--media-dir", default=None,
                   help="where images/masks the importer must write go (default: under the FiftyOne dataset dir)")
    p.add_argument("--images", default=None, help="coco: image folder")
    p.add_argument("--labels-json", default=None, help="folder: labels file (default PATH/labels.json)")
    p.add_argument("--root", default=None, help="csv: folder relative paths are resolved against")
    p.add_argument("--split", default="train", help="hf: split to import")
    p.add_argument("--image-key", default=None, help="hf: image column (default: the Image feature)")
    p.add_argument("--label-key", default=None, help="hf: label column (default: the ClassLabel feature)")
    p.add_argument("--segmentations", default=None, help="cub: segmentations/ folder if not next to the data")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.media_dir is not None:
        chk.check_folder(args.media_dir, "--media-dir")
    from ewc_fo.fo.io.importers import detect_source, import_source

    kind = detect_source(args.path) if args.source == "auto" else args.source
    options = {  # unset ones are dropped; one set for another format is refused by name
        "images_dir": args.images, "labels_json": args.labels_json, "root": args.root,
        "image_key": args.image_key, "label_key": args.label_key, "segmentations_dir": args.segmentations,
        "split": args.split if kind == "hf" else None,  # has a default: hf's only
    }
    ds = import_source(
        kind, args.name, args.path, label_field=args.label_field, overwrite=args.overwrite,
        max_samples=args.max_samples, media_dir=args.media_dir, **options,
    )
    print(describe(ds, args.label_field))
    return 0


def describe(ds, label_field: str) -> str:
    """One paragraph a user can check the import against."""
    classes = ds.classes.get(label_field, [])
    from ewc_fo.fo.review.summary import exact_count

    lines = [f"dataset {ds.name!r}: {exact_count(ds)} images, {len(classes)} classes in field {label_field!r}"]
    schema = ds.get_field_schema()
    if label_field in schema:
        unlabeled = len(ds.exists(label_field, False))
        if unlabeled:
            lines.append(f"  {unlabeled} images have no label")
    for f in sorted(ds.mask_targets):
        lines.append(f"  ground-truth masks in {f!r} ({ds.count(f)} images)")
    skipped = (ds.info.get("ewc_import") or {}).get("skipped_names")
    if skipped:
        lines.append(f"  {skipped} files skipped: their names are not valid UTF-8 (rename them to import them)")
    tags = ds.count_sample_tags()
    if tags:
        lines.append("  tags: " + ", ".join(f"{k} ({v})" for k, v in sorted(tags.items())))
    return "\n".join(lines)

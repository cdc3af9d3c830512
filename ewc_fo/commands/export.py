"""``ewc-fo export``: write a run's masks as COCO (RLE instances) or VOC (palette PNGs)."""

from __future__ import annotations

from ewc_fo.commands import _checks as chk
from ewc_fo.commands._common import (
    add_dataset_args,
    add_selection_args,
    load_view,
    required_group,
    select_view,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run's masks to COCO instances JSON (RLE) or a VOC segmentation folder",
        description="Samples tagged ewc:reject are left out unless --include-rejected.",
    )
    req = required_group(p)
    add_dataset_args(p, req)
    req.add_argument("--format", required=True, choices=["coco", "voc"], dest="fmt",
                     help="coco: instances JSON with RLE masks; voc: palette-PNG segmentation folder")
    req.add_argument("--out", required=True,
                     help="export folder: empty, or a previous export with --overwrite; never the "
                     "folder of the dataset's images or masks")
    p.add_argument("--prefix", default="ewc", help="prefix of the run to export")
    p.add_argument("--reviewed-only", action="store_true", help="only samples tagged ewc:reviewed")
    p.add_argument("--include-rejected", action="store_true", help="keep samples tagged ewc:reject")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous export in --out (only the files its manifest lists)")
    p.add_argument("--classes", default=None, metavar="SOURCE",
                   help="class ids to write: 'voc' (the 21 standard VOC ids), a file (one name per line, "
                        "background first; or JSON list / {id: name}), or a field of the dataset's "
                        "mask_targets (e.g. ground_truth). Default: VOC's ids when the run's classes are "
                        "VOC's (--format voc), else the run's own")
    coco = p.add_argument_group("COCO")
    coco.add_argument("--polygons", action="store_true", help="polygons instead of RLE (lossy: holes are filled)")
    coco.add_argument("--no-copy-images", action="store_true", help="reference images by absolute path")
    coco.add_argument("--overlapping-masks", action="store_true",
                      help="keep instances' overlaps (default: each pixel of an image belongs to one instance)")
    voc = p.add_argument_group("VOC")
    voc.add_argument("--uncertain-band", type=chk.non_negative_int, default=0, metavar="N",
                     help="mark an N-px band around mask boundaries as 255 (ignored by trainers)")
    voc.add_argument("--min-confidence", type=chk.unit_float, default=None,
                     help="mark images, classes and instances below this confidence as 255")
    voc.add_argument("--split", default="train", type=chk.plain_name,
                     help="name of the ImageSets/Segmentation list (a plain name: letters, digits, _ . -)")
    add_selection_args(p, classes=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from ewc_fo.runtime.errors import ConfigError

    chk.check_prefix(args.prefix)
    if args.fmt == "coco" and (args.uncertain_band or args.min_confidence is not None):
        raise ConfigError("--uncertain-band and --min-confidence apply to --format voc only")
    if args.fmt == "voc" and (args.polygons or args.no_copy_images or args.overlapping_masks):
        raise ConfigError("--polygons, --no-copy-images and --overlapping-masks apply to --format coco only")
    chk.check_folder(args.out, "--out")
    from ewc_fo.fo.io.export import (  # they refuse an unsafe --out before writing
        export_coco,
        export_voc,
    )

    view = select_view(load_view(args.dataset, args.view), args)
    common = dict(
        prefix=args.prefix,
        classes=args.classes,
        skip_rejected=not args.include_rejected,
        reviewed_only=args.reviewed_only,
        overwrite=args.overwrite,
    )
    if args.fmt == "coco":
        res = export_coco(view, args.out, polygons=args.polygons, copy_images=not args.no_copy_images,
                          overlapping=args.overlapping_masks, **common)
    else:
        res = export_voc(view, args.out, uncertain_band=args.uncertain_band,
                         min_confidence=args.min_confidence, split=args.split, **common)
    print(res)
    return 0

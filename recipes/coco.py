"""Recipe: COCO instances JSON + images.

Image-level labels are the categories annotated on each image; the annotations become
``ground_truth_instances`` (fo.Detections with masks) and ``ground_truth`` (semantic mask).

    python recipes/coco.py coco-val /data/coco/annotations/instances_val2017.json \
        --images /data/coco/val2017 --max-samples 500
"""

from __future__ import annotations

import argparse
import sys

from _pipeline import add_common_args, cli, finish


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("labels", help="COCO instances JSON, or a folder with one (images/ + annotations/)")
    p.add_argument("--images", default=None, help="image folder (default data/ or images/ next to the JSON)")
    args = p.parse_args(argv)
    from ewc_fo.fo.io.importers import import_coco

    ds = import_coco(args.name, args.labels, images_dir=args.images, label_field=args.label_field,
                     media_dir=args.media_dir, overwrite=args.overwrite, max_samples=args.max_samples)
    return finish(args, ds, has_gt=True)


if __name__ == "__main__":
    sys.exit(cli(main))

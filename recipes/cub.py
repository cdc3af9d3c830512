"""Recipe: CUB-200-2011 as distributed (the paper's second benchmark).

Needs images/, images.txt, image_class_labels.txt, classes.txt (train_test_split.txt gives
train/test tags). The separate segmentations/ download, inside the folder or next to it,
becomes ``ground_truth`` (majority of annotators, set to the image's class id).

    python recipes/cub.py cub /data/CUB_200_2011 --segmentations /data/segmentations
"""

from __future__ import annotations

import argparse
import sys

from _pipeline import add_common_args, cli, finish


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("path", help="CUB_200_2011 folder")
    p.add_argument("--segmentations", default=None, help="segmentations/ folder if not found automatically")
    args = p.parse_args(argv)
    from ewc_fo.fo.io.importers import import_cub

    ds = import_cub(args.name, args.path, segmentations_dir=args.segmentations,
                    label_field=args.label_field, media_dir=args.media_dir,
                    overwrite=args.overwrite, max_samples=args.max_samples)
    return finish(args, ds, has_gt=ds.count("ground_truth") > 0)


if __name__ == "__main__":
    sys.exit(cli(main))

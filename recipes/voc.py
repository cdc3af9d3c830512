"""Recipe: a VOC-style folder (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/).

Image-level labels come from the classes present in each mask; the masks themselves become
the ``ground_truth`` fo.Segmentation field, so ``ewc-fo evaluate`` can score the run.

    python recipes/voc.py voc-dev ../shared/data/voc_dev
    python recipes/voc.py voc-dev ../shared/data/voc_dev --run-all --export-format voc
"""

from __future__ import annotations

import argparse
import sys

from _pipeline import add_common_args, cli, finish


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("path", help="VOC-style folder")
    args = p.parse_args(argv)
    from ewc_fo.fo.io.importers import import_voc

    ds = import_voc(args.name, args.path, label_field=args.label_field, media_dir=args.media_dir,
                    overwrite=args.overwrite, max_samples=args.max_samples)
    return finish(args, ds, has_gt=True)


if __name__ == "__main__":
    sys.exit(cli(main))

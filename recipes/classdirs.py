"""Recipe: a folder of class subfolders, ImageNet style (ROOT/<class>/*.jpg), optionally
split first (ROOT/train/<class>/..., ROOT/val/<class>/...: the split becomes a tag).

    python recipes/classdirs.py pets ~/data/pets
"""

from __future__ import annotations

import argparse
import sys

from _pipeline import add_common_args, cli, finish


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("path", help="folder of class subfolders")
    args = p.parse_args(argv)
    from ewc_fo.fo.io.importers import import_classdirs

    ds = import_classdirs(args.name, args.path, label_field=args.label_field,
                          overwrite=args.overwrite, max_samples=args.max_samples)
    return finish(args, ds)


if __name__ == "__main__":
    sys.exit(cli(main))

"""Recipe: a CSV of ``filepath,label(s)`` (header optional; several labels per image separated
by ``;`` or ``|``; relative paths are resolved against --root, default the CSV's folder).

    python recipes/csv_labels.py shop ~/data/shop/labels.csv

(Named csv_labels.py, not csv.py, so it does not shadow Python's csv module.)
"""

from __future__ import annotations

import argparse
import sys

from _pipeline import add_common_args, cli, finish


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("csv", help="CSV file")
    p.add_argument("--root", default=None, help="folder relative paths are resolved against")
    args = p.parse_args(argv)
    from ewc_fo.fo.io.importers import import_csv

    ds = import_csv(args.name, args.csv, root=args.root, label_field=args.label_field,
                    overwrite=args.overwrite, max_samples=args.max_samples)
    return finish(args, ds)


if __name__ == "__main__":
    sys.exit(cli(main))

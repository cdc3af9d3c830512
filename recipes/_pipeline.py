"""Shared tail of every recipe: print (or run) fit -> label -> triage -> export.

Not a recipe itself; imported by the scripts next to it (run them as ``python recipes/x.py``).
"""

from __future__ import annotations

import argparse
import shlex


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="name of the FiftyOne dataset to create")
    p.add_argument("--label-field", default="labels", help="field for the image-level labels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    p.add_argument("--max-samples", type=int, default=None, help="import at most this many images")
    p.add_argument("--media-dir", default=None, help="where files the importer writes go")
    p.add_argument("--export-format", default="coco", choices=["coco", "voc"])
    p.add_argument("--export-dir", default=None, help="default: exports/<name>-<format>")
    p.add_argument("--run-all", action="store_true",
                   help="after importing, run fit, label, summary (and evaluate) and export")


def steps(name: str, label_field: str, fmt: str, out: str, has_gt: bool) -> list[list[str]]:
    """The documented sequence (recipes/README.md), as ewc-fo argument lists."""
    ckpt = f"models/{name}.safetensors"
    seq = [
        ["fit", name, "--label-field", label_field, "--out", ckpt],
        ["label", name, "--label-field", label_field, "--classifier", ckpt],
        ["summary", name],
    ]
    if has_gt:
        seq.append(["evaluate", name, "--gt-field", "ground_truth"])
    seq.append(["export", name, "--format", fmt, "--out", out])
    return seq


def finish(args: argparse.Namespace, ds, has_gt: bool = False) -> int:
    from ewc_fo.commands.create import describe

    print(describe(ds, args.label_field))
    out = args.export_dir or f"exports/{ds.name}-{args.export_format}"
    seq = steps(ds.name, args.label_field, args.export_format, out, has_gt)
    if not args.run_all:
        print("\nNext (review in between with: ewc-fo app "
              f"{shlex.quote(ds.name)} --view ewc-low-confidence):")
        for s in seq:
            print("  ewc-fo " + shlex.join(s))
        return 0
    from ewc_fo.cli import main

    for s in seq:
        print("\n$ ewc-fo " + shlex.join(s), flush=True)
        rc = main(s)
        if rc:
            return rc
    return 0


def cli(main) -> int:
    """Run a recipe's ``main`` and turn ewc-fo's own errors into one line, like ``ewc-fo``."""
    from ewc_fo.runtime.errors import EWCError

    try:
        return main()
    except EWCError as e:
        import sys

        print(f"error: {e}", file=sys.stderr)
        return 2

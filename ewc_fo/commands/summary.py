"""``ewc-fo summary``: what runs a dataset holds, their outcome, the review's progress and the
worst samples; ``--png`` also draws the overview picture (maps, masks, confidence) of a run."""

from __future__ import annotations

import os

from ewc_fo.commands import _checks as chk
from ewc_fo.commands._common import add_dataset_args, load_view


def add_parser(sub) -> None:
    p = sub.add_parser("summary", help="summarise ewc-fo runs on a dataset and list triage views")
    add_dataset_args(p)
    p.add_argument("--prefix", default=None, help="only this run (default: all ewc-fo runs)")
    p.add_argument("--worst", type=chk.non_negative_int, default=5, help="how many lowest-confidence samples to list")
    p.add_argument("--png", default=None, metavar="PATH",
                   help="write the overview picture of the run there (one file per run, -<prefix> "
                        "added, when there are several)")
    p.add_argument("--png-samples", type=chk.positive_int, default=8,
                   help="rows (samples, lowest confidence first) in the picture")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.prefix is not None:
        chk.check_prefix(args.prefix)
    if args.png:
        chk.check_file_target(args.png, "--png")
    view = load_view(args.dataset, args.view)  # a typo is answered before FiftyOne loads
    from ewc_fo.fo.review.summary import list_ewc_runs, run_summary
    from ewc_fo.runtime.errors import ConfigError

    print(run_summary(view, prefix=args.prefix, worst=args.worst))
    if args.png:
        ds = view._root_dataset if hasattr(view, "_root_dataset") else view
        prefixes = [args.prefix] if args.prefix else list_ewc_runs(ds)
        if not prefixes:
            raise ConfigError(f"dataset {ds.name!r} has no ewc-fo run to draw")
        from ewc_fo.fo.review.viz import overview

        os.makedirs(os.path.dirname(os.path.abspath(args.png)), exist_ok=True)
        stem, ext = os.path.splitext(args.png)
        for p in prefixes:
            path = args.png if len(prefixes) == 1 else f"{stem}-{p}{ext or '.png'}"
            out = overview(view, p, path, max_samples=args.png_samples)
            print(f"overview of run {p!r}: {out}" if out else f"run {p!r} labeled none of these samples: no picture")
    return 0

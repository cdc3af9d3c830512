"""``ewc-fo summary``: what runs a dataset holds, their outcome and the worst samples."""

from __future__ import annotations

from . import _checks as chk
from ._common import add_dataset_args, load_view


def add_parser(sub) -> None:
    p = sub.add_parser("summary", help="summarise ewc-fo runs on a dataset and list triage views")
    add_dataset_args(p)
    p.add_argument("--prefix", default=None, help="only this run (default: all ewc-fo runs)")
    p.add_argument("--worst", type=chk.non_negative_int, default=5, help="how many lowest-confidence samples to list")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.prefix is not None:
        chk.check_prefix(args.prefix)
    from ..fo.summary import run_summary

    view = load_view(args.dataset, args.view)
    print(run_summary(view, prefix=args.prefix, worst=args.worst))
    return 0

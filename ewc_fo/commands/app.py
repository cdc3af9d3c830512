"""``ewc-fo app``: open the FiftyOne App on a dataset (optionally on a triage view)."""

from __future__ import annotations

from . import _checks as chk
from ._common import add_dataset_args, load_view


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="launch the FiftyOne App on a dataset")
    add_dataset_args(p)
    p.add_argument("--port", type=chk.port, default=5151, help="port the App listens on")
    p.add_argument("--address", default="localhost", help="address the App binds to")
    p.set_defaults(func=run)


def run(args) -> int:
    import fiftyone as fo

    view = load_view(args.dataset, args.view)
    session = fo.launch_app(view, port=args.port, address=args.address, auto=False)
    print(f"FiftyOne App at {session.url} (Ctrl+C to stop)")
    session.wait(-1)
    return 0

"""``ewc-fo app``: open the FiftyOne App on a dataset (optionally on a triage view), with the
ewc-fo plugin (operators and review panel) loaded, without the user exporting anything."""

from __future__ import annotations

import os
import sys

from ewc_fo.commands import _checks as chk
from ewc_fo.commands._common import add_dataset_args, load_view

PLUGIN_NAME = "@ewc-fo/ewc"


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="launch the FiftyOne App on a dataset, with the ewc-fo plugin")
    add_dataset_args(p)
    p.add_argument("--port", type=chk.port, default=5151, help="port the App listens on")
    p.add_argument("--address", default="localhost", help="address the App binds to")
    p.add_argument("--remote", action="store_true",
                   help="serve for a browser on another machine (prints the ssh port-forward to run there)")
    p.set_defaults(func=run)


def project_plugins_dir() -> str | None:
    """This checkout's ``plugins/`` folder (the one holding ``ewc-fo/fiftyone.yml``), if any."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    d = os.path.join(root, "plugins")
    return d if os.path.isfile(os.path.join(d, "ewc-fo", "fiftyone.yml")) else None


def register_plugins(plugins_dir: str | None = None, cache_dir: str | None = None) -> str | None:
    """Make FiftyOne (this process and the App server it starts) find the ewc-fo plugin.

    The user's own plugins directory is kept: when they have one that lacks ewc-fo, FiftyOne is
    pointed at a folder of two links, theirs and ours (nothing is written into theirs).
    Returns the plugins directory FiftyOne now uses, or None when the plugin is not available.
    """
    import fiftyone as fo
    import fiftyone.plugins as fop

    ours = plugins_dir or project_plugins_dir()
    current = fo.config.plugins_dir
    if current and os.path.isdir(current):
        try:
            if PLUGIN_NAME in [p.name for p in fop.list_plugins(enabled="all")]:
                return current
        except Exception:  # an unreadable plugin of theirs: still add ours
            pass
    if ours is None:
        return current
    target = ours
    if current and os.path.isdir(current) and os.path.realpath(current) != os.path.realpath(ours):
        target = os.path.join(cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "ewc-fo"), "plugins")
        os.makedirs(target, exist_ok=True)
        for name, src in (("user", current), ("ewc-fo", ours)):
            link = os.path.join(target, name)
            if os.path.islink(link) and os.readlink(link) != src:
                os.remove(link)
            if not os.path.lexists(link):
                os.symlink(src, link)
    os.environ["FIFTYONE_PLUGINS_DIR"] = target  # the App server is a subprocess
    fo.config.plugins_dir = target
    return target


def run(args) -> int:
    import fiftyone as fo

    view = load_view(args.dataset, args.view)
    if register_plugins() is None:
        print("note: the ewc-fo plugin was not found next to this package; install it with "
              "`fiftyone plugins download <repo url>`", file=sys.stderr)
    print(f"starting the App server on {args.address}:{args.port} ...", flush=True)
    sys.stdout = _Quiet(sys.stdout)  # FiftyOne prints "Could not connect session" while its server starts
    try:
        session = fo.launch_app(view, port=args.port, address=args.address, remote=args.remote, auto=False)
        if not args.remote:
            print(f"FiftyOne App at {session.url} (Ctrl+C to stop)")
        session.wait(-1)
    finally:
        sys.stdout = sys.stdout.stream if isinstance(sys.stdout, _Quiet) else sys.stdout
    return 0


class _Quiet:
    """stdout without FiftyOne's session-client retry notice (printed from its thread while the
    App server is still starting; the session connects by itself a few seconds later)."""

    DROP = ("Could not connect session",)

    def __init__(self, stream):
        self.stream = stream
        self._dropped = False

    def write(self, text: str) -> int:
        if any(d in text for d in self.DROP):
            self._dropped = True
            return len(text)
        if self._dropped and text.strip() == "":  # print()'s line end after a dropped notice
            self._dropped = False
            return len(text)
        self._dropped = False
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)

"""The ``ewc-fo`` command: parse and check arguments, dispatch to ``ewc_fo.commands.<name>``.

Nothing heavy is imported here: argument types (``commands/_checks.py``) reject bad values
while parsing, and each command checks the rest before it imports torch or loads a model.
Every error a user can cause is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ewc_fo import __version__
from ewc_fo.commands import COMMANDS


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions with line breaks are kept as written (the others are wrapped); an option's
    default is shown once: appended only when its help does not already state it, and never
    for flags or empty defaults."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        if (
            "default" in h.lower()
            or action.default in (None, False, argparse.SUPPRESS, "")
            or action.required
            or not action.option_strings
        ):
            return h
        return f"{h} (default: %(default)s)" if h else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage stays behind ``--help``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ewc-fo",
        description="Explain with Confidence: image-level labels to pixel masks in FiftyOne.",
    )
    parser.add_argument("--version", action="version", version=f"ewc-fo {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"ewc_fo.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"ewc_fo.commands.{name}":
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, --list-explainers, or a usage error (printed)
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ewc_fo.runtime.errors import EWCError

    # FiftyOne's database validation warns on every connection to MongoDB 6 ("oldest supported
    # version"), which reads as a failure; `ewc-fo doctor` checks the version once instead
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    try:
        from ewc_fo.commands import _lookup

        field = getattr(args, "label_field", None)  # load_view checks it with the dataset, before FiftyOne loads
        _lookup.REQUESTED_FIELD = field if isinstance(field, str) else None
        try:
            return int(args.func(args) or 0)
        finally:
            _lookup.REQUESTED_FIELD = None  # this command's field, not a later one's in this process
    except EWCError as e:
        print(f"ewc-fo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        from ewc_fo.fo.database import connection_error, down_message

        if connection_error(e) is None:
            raise
        print(f"ewc-fo {args.command}: error: {down_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``ewc-fo`` command: parse arguments, dispatch to ``ewc_fo.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import sys

from .commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ewc-fo",
        description="Explain with Confidence: image-level labels to pixel masks in FiftyOne.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .engine.errors import EWCError

    try:
        return int(args.func(args) or 0)
    except EWCError as e:
        print(f"ewc-fo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

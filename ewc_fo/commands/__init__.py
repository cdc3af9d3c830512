"""CLI subcommands: each module defines ``add_parser(subparsers)`` and ``run(args) -> int``.

Keeping one module per subcommand lets ``ewc_fo.cli`` stay a thin dispatcher.
"""

COMMANDS = ["create", "fit", "train_seg", "label", "summary", "evaluate", "annotate", "export", "app", "demo", "doctor"]

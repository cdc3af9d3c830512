"""FiftyOne plugin for ewc-fo: operators and a review panel over the ``ewc_fo`` package.

Operators are thin on purpose: ``execute`` reads every parameter up front and makes one
``ewc_fo`` call, so the App, delegated workers and Python (``foo.get_operator(uri)(...)``)
all run exactly the code the CLI runs. ``ewc_fo`` is imported lazily so that listing
operators in the App stays fast.

One module per area; each lists its operators/panels in ``OPERATORS``. A new area registers
with one line: its module name in :data:`MODULES` (and its operator names in fiftyone.yml).
Shared parts: ``_common`` (progress, one-line errors, Python calls), ``forms`` (form inputs).
"""

from __future__ import annotations

import importlib

PLUGIN = "@ewc-fo/ewc"

MODULES = (
    "fit",
    "compute",
    "triage",
    "evaluate",
    "export",
    "review",
    "annotate_ops",
    "train_seg",
)


def register(p):
    for name in MODULES:
        for cls in importlib.import_module(f".{name}", __name__).OPERATORS:
            p.register(cls)

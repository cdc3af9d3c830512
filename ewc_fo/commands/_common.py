"""Helpers shared by subcommands: loading a dataset or one of its saved views."""

from __future__ import annotations

import argparse

from ..engine.errors import ConfigError


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="name of the FiftyOne dataset")
    p.add_argument("--view", default=None, help="name of a saved view of the dataset to use instead")


def load_view(name: str, view: str | None = None):
    """Return the dataset (or its saved view) with a clear error if either is missing."""
    import fiftyone as fo

    if not fo.dataset_exists(name):
        have = ", ".join(fo.list_datasets()) or "none"
        raise ConfigError(f"no FiftyOne dataset named {name!r} (datasets: {have})")
    ds = fo.load_dataset(name)
    if view:
        if not ds.has_saved_view(view):
            raise ConfigError(f"dataset {name!r} has no saved view {view!r} "
                              f"(saved views: {', '.join(ds.list_saved_views()) or 'none'})")
        return ds.load_saved_view(view)
    return ds

"""Where a run writes its files, and which dataset owns that folder.

The default folder is keyed by the dataset's id (unique across databases, unlike its name)
with the readable name beside it: ``<dataset dir>/ewc_fo/<name>-<id>/<prefix>``. A run
leaves an owner file there; a run of another dataset (another database, or the same name
recreated) refuses the folder instead of overwriting its files.
"""

from __future__ import annotations

import json
import os
import re

import fiftyone as fo

from ewc_fo.runtime.errors import ConfigError

#: the file in a run's output folder naming the dataset and prefix that own it
OWNER_FILE = ".ewc_fo_owner.json"


def dataset_key(dataset: fo.Dataset) -> str:
    """``<name>-<id>``: readable, and unique to this dataset whatever database it lives in."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset.name)
    return f"{name}-{dataset._doc.id}"


def default_output_dir(dataset: fo.Dataset, prefix: str) -> str:
    return os.path.join(fo.config.default_dataset_dir, "ewc_fo", dataset_key(dataset), prefix)


def read_owner(out_dir: str) -> dict | None:
    try:
        with open(os.path.join(out_dir, OWNER_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_owner(dataset: fo.Dataset, prefix: str, out_dir: str) -> None:
    """Refuse ``out_dir`` when a run of another dataset wrote there (its owner file says so)."""
    owner = read_owner(out_dir)
    if owner and owner.get("dataset_id") != str(dataset._doc.id):
        raise ConfigError(
            f"output folder {out_dir} holds the files of run {owner.get('prefix')!r} of another dataset "
            f"({owner.get('dataset_name')!r}, id {owner.get('dataset_id')}, database "
            f"{owner.get('database') or '?'}); choose another --output-dir"
        )


def mark_owner(dataset: fo.Dataset, prefix: str, out_dir: str) -> None:
    """Write the owner file (call after :func:`check_owner`, once the folder exists)."""
    owner = {"dataset_id": str(dataset._doc.id), "dataset_name": dataset.name, "prefix": prefix,
             "database": fo.config.database_name}
    if read_owner(out_dir) != owner:
        with open(os.path.join(out_dir, OWNER_FILE), "w") as f:
            json.dump(owner, f)


def release_owner(dataset: fo.Dataset, out_dir: str) -> None:
    """Remove the owner file if it is this dataset's (its run is deleted)."""
    owner = read_owner(out_dir)
    if owner and owner.get("dataset_id") == str(dataset._doc.id):
        os.remove(os.path.join(out_dir, OWNER_FILE))

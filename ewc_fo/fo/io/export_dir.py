"""The export folder: refuse one that holds the dataset's own files, and a manifest so that
``overwrite`` deletes only what an earlier export wrote (``export_manifest``).

Why: an export into the folder a dataset was imported from (COCO ``DIR/data``, VOC
``JPEGImages``/``SegmentationClass``) used to clear those folders on ``--overwrite``, deleting
the source images and ground truth. Now

- :func:`check_out_dir` refuses, before anything is written or deleted, a folder that contains
  any media file, mask/heatmap file or import source the dataset references;
- every file and folder an export creates is appended to ``MANIFEST`` *before* it is created
  (so an interrupted export is cleaned up too), with its size and SHA-256 once written, and
  ``overwrite`` removes only those entries that still match, never anything else;
- a symlink among the paths an export would write or delete refuses the folder up front;
- a name the export would write that already exists and is not in the manifest is refused
  up front (fixed names) or avoided (per-image names, see :meth:`OutDir.taken`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import fiftyone as fo

from ewc_fo.fo.io.export_manifest import (  # noqa: F401 - MANIFEST, OutDir: public here too
    MANIFEST,
    OutDir,
    read_manifest,
    remove_previous,
    symlink_on_the_way,
    why_kept,
)
from ewc_fo.runtime.errors import ConfigError

_MEDIA_PATHS = {fo.Segmentation: ("mask_path",), fo.Heatmap: ("map_path",), fo.Detection: ("mask_path",)}


def referenced_files(samples: fo.Dataset | fo.DatasetView) -> set[str]:
    """Absolute real paths of every file the whole dataset refers to: media, masks, heatmaps,
    instance masks (top-level fields) and the folder/file it was imported from."""
    ds = samples._dataset
    paths: set[str] = set(ds.values("filepath"))
    for name, f in ds.get_field_schema().items():
        doc = getattr(f, "document_type", None)
        if doc is fo.Detections:
            paths.update(p for ps in ds.values(f"{name}.detections.mask_path") for p in ps or [] if p)
            continue
        for attr in _MEDIA_PATHS.get(doc, ()):
            paths.update(p for p in ds.values(f"{name}.{attr}") if p)
    src = (ds.info or {}).get("ewc_import", {}).get("source")
    if src and os.path.exists(src):
        paths.add(src)
    return {os.path.realpath(p) for p in paths if isinstance(p, str) and p}


def _contained(root: str, paths: Iterable[str]) -> list[str]:
    base = root.rstrip(os.sep) + os.sep
    return [p for p in paths if p == root or p.startswith(base)]


def _other_datasets_files(real: str) -> str | None:
    """What of *any* dataset in the database lies in folder ``real``: an image (one query per
    dataset on filepaths under it) or a label run's output folder (its masks, heatmaps and
    maps), in words; None if nothing."""
    from fiftyone import ViewField as F

    from ewc_fo.fo.runs.record import get_run

    base = real.rstrip(os.sep) + os.sep
    for name in fo.list_datasets():
        d = fo.load_dataset(name)
        hit = d.match(F("filepath").starts_with(base)).limit(1).values("filepath")
        if hit:
            return f"images of dataset {name!r} (e.g. {hit[0]})"
        for prefix in d.list_runs():
            rec = get_run(d, prefix) or {}
            od = rec.get("output_dir")
            run_dir = os.path.realpath(od) + os.sep if od else None
            if run_dir and (run_dir.startswith(base) or base.startswith(run_dir)):
                return f"the masks, heatmaps and maps of run {prefix!r} of dataset {name!r} ({od})"
    return None


def check_out_dir(
    samples: fo.Dataset | fo.DatasetView,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    fixed: Iterable[str] = (),
    folders: Iterable[str] = (),
) -> Path:
    """Raise :class:`ConfigError` unless an export of ``samples`` may write to ``out_dir``;
    changes nothing on disk. Returns the absolute folder.

    Refused: a path that is a file; a folder containing any file the dataset (or any other
    dataset or label run) references; a non-empty folder without ``overwrite``; and, with
    ``overwrite``, a manifest that is a symlink or not a v2 manifest, a symlink among the
    ``fixed`` names (e.g. ``labels.json``), the ``folders`` the export writes into and the
    manifest's entries, and a ``fixed`` name that exists but is not exactly what the manifest
    recorded (a file the export did not write, or one changed since).
    """
    return _check(samples, out_dir, overwrite, fixed, folders)[0]


def _check(samples, out_dir, overwrite: bool, fixed: Iterable[str], folders: Iterable[str]):
    """:func:`check_out_dir`, also returning the folder's manifest (None if there is none)."""
    root = Path(os.path.abspath(Path(out_dir).expanduser()))
    if root.exists() and not root.is_dir():
        raise ConfigError(f"export target {root} exists and is not a folder")
    if not root.is_dir() or not any(root.iterdir()):
        return root, None
    real = os.path.realpath(root)
    clash = _contained(real, referenced_files(samples))
    if clash:
        raise ConfigError(
            f"refusing to export into {root}: it holds {len(clash)} of the dataset's own files "
            f"(e.g. {clash[0]}); choose an empty folder outside the dataset's images and masks"
        )
    other = _other_datasets_files(real)
    if other:
        raise ConfigError(f"refusing to export into {root}: it holds {other}; choose an empty folder "
                          "outside every dataset's images and runs")
    if not overwrite:
        raise ConfigError(f"export folder {root} is not empty; pass --overwrite (overwrite=True)")
    man = read_manifest(root)
    fixed = list(fixed)
    for rel in (*fixed, *folders, *(man.entries() if man else ())):
        link = symlink_on_the_way(root, rel)
        if link is not None:
            raise ConfigError(f"refusing to export into {root}: {link} is a symlink (the export would write or "
                              "delete through it); remove it or choose another folder")
    recorded = man.files if man else {}
    foreign = [n for n in fixed if os.path.lexists(root / n) and n not in recorded]
    if foreign:
        raise ConfigError(
            f"refusing to overwrite {', '.join(str(root / n) for n in foreign)}: not written by an "
            f"ewc-fo export (no {MANIFEST} lists it); move it away or choose another folder"
        )
    changed = [(n, why) for n in fixed if n in recorded and (why := why_kept(root, n, recorded[n]))]
    if changed:
        n, why = changed[0]
        raise ConfigError(f"refusing to overwrite {root / n}: {why}; move it away or choose another folder")
    return root, man


def prepare_out_dir(
    samples: fo.Dataset | fo.DatasetView,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    fixed: Iterable[str] = (),
    folders: Iterable[str] = (),
) -> OutDir:
    """:func:`check_out_dir`, then delete the previous export's files that are still what it
    wrote (:func:`remove_previous`) and start a new manifest."""
    root, previous = _check(samples, out_dir, overwrite, fixed, folders)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create export folder {root}: {e.strerror or e}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"export folder {root} is not writable")
    if previous is not None:
        remove_previous(root, previous)
    return OutDir(root.resolve())

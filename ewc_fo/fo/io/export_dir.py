"""The export folder: refuse one that holds the dataset's own files, and a manifest so that
``overwrite`` deletes only what an earlier export wrote.

Why: an export into the folder a dataset was imported from (COCO ``DIR/data``, VOC
``JPEGImages``/``SegmentationClass``) used to clear those folders on ``--overwrite``, deleting
the source images and ground truth. Now

- :func:`check_out_dir` refuses, before anything is written or deleted, a folder that contains
  any media file, mask/heatmap file or import source the dataset references;
- every file and folder an export creates is appended to ``MANIFEST`` *before* it is created
  (so an interrupted export is cleaned up too), and ``overwrite`` removes exactly those
  entries, never anything else;
- a name the export would write that already exists and is not in the manifest is refused
  up front (fixed names) or avoided (per-image names, see :meth:`OutDir.taken`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import fiftyone as fo

from ewc_fo.runtime.errors import ConfigError

MANIFEST = "ewc-fo-manifest.txt"
_HEADER = "# ewc-fo export manifest v1: what this export wrote; --overwrite deletes only these\n"

log = logging.getLogger(__name__)

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


class OutDir:
    """An export folder being written: every path goes through :meth:`file` / :meth:`folder`,
    which record it in the manifest first."""

    def __init__(self, root: Path):
        self.root = root
        (root / MANIFEST).write_text(_HEADER)

    def _record(self, rel: str) -> None:
        # appended and closed per entry: an export killed half way still lists all it wrote
        with open(self.root / MANIFEST, "a") as f:
            f.write(rel + "\n")

    def _inside(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        try:
            p.resolve().relative_to(self.root)
        except ValueError:
            raise ConfigError(f"refusing to write outside the export folder: {p}") from None
        return p

    def folder(self, *parts: str) -> Path:
        """Create (if needed) and record the folder ``root/parts``."""
        p = self._inside(*parts)
        for i in range(1, len(parts) + 1):
            q = self.root.joinpath(*parts[:i])
            if not q.exists():
                self._record(Path(*parts[:i]).as_posix() + "/")
                q.mkdir()
        return p

    def file(self, *parts: str) -> Path:
        """The path ``root/parts`` to write, recorded; a file there that this export did not
        write is refused (it was checked for up front, so this only fires on a race)."""
        p = self._inside(*parts)
        if p.exists() or p.is_symlink():
            raise ConfigError(f"refusing to replace {p}: the export did not write it")
        self._record(Path(*parts).as_posix())
        return p

    def taken(self, *parts: str) -> set[str]:
        """Lower-cased names already in folder ``root/parts`` (not ours: ours were removed), to
        seed the unique-name sets so per-image files never land on a foreign file."""
        d = self.root.joinpath(*parts)
        return {c.name.lower() for c in d.iterdir()} if d.is_dir() else set()


def _read_manifest(root: Path) -> list[str] | None:
    m = root / MANIFEST
    if m.is_symlink() or not m.is_file():
        return None
    lines = m.read_text(errors="replace").splitlines()
    return [ln for ln in lines[1:] if ln and not ln.startswith("#")] if lines[:1] == [_HEADER.strip()] else None


def _remove_previous(root: Path, entries: list[str]) -> None:
    """Delete the files, then the (now empty) folders, a previous export listed; entries that
    climb out of ``root`` or through a symlink are ignored."""
    real_root = os.path.realpath(root)
    files = [e for e in entries if not e.endswith("/")]
    dirs = [e.rstrip("/") for e in entries if e.endswith("/")]
    for rel in files:
        try:
            parts = Path(rel).parts
            if not parts or ".." in parts or Path(rel).is_absolute():
                continue
            p = root.joinpath(*parts)
            if os.path.realpath(p.parent) != os.path.join(real_root, *parts[:-1]).rstrip(os.sep):
                continue  # a folder on the way is a symlink: not something the export made
            if p.is_symlink() or p.is_file():
                p.unlink()
        except (OSError, ValueError) as e:  # a name too long, a NUL byte: a line no export wrote
            log.warning("skipping a malformed line of %s (%s)", root / MANIFEST, type(e).__name__)
    for rel in sorted(dirs, key=lambda d: -len(Path(d).parts)):
        try:
            parts = Path(rel).parts
            if not parts or ".." in parts or Path(rel).is_absolute():
                continue
            p = root.joinpath(*parts)
            if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
                p.rmdir()
        except (OSError, ValueError) as e:
            log.warning("skipping a malformed line of %s (%s)", root / MANIFEST, type(e).__name__)
    (root / MANIFEST).unlink(missing_ok=True)


def check_out_dir(
    samples: fo.Dataset | fo.DatasetView,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    fixed: Iterable[str] = (),
) -> Path:
    """Raise :class:`ConfigError` unless an export of ``samples`` may write to ``out_dir``;
    changes nothing on disk. Returns the absolute folder.

    Refused: a path that is a file; a folder containing any file the dataset references
    (:func:`referenced_files`); a non-empty folder without ``overwrite``; and, with
    ``overwrite``, a folder where one of the ``fixed`` names (e.g. ``labels.json``) exists but
    is not listed in the folder's manifest (a file the export did not write).
    """
    root = Path(os.path.abspath(Path(out_dir).expanduser()))
    if root.exists() and not root.is_dir():
        raise ConfigError(f"export target {root} exists and is not a folder")
    if not root.is_dir() or not any(root.iterdir()):
        return root
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
    if (root / MANIFEST).is_symlink():  # writing it would follow the link out of the folder
        raise ConfigError(f"refusing to use {root / MANIFEST}: it is a symlink, not a manifest an "
                          "ewc-fo export wrote; remove it or choose another folder")
    listed = _read_manifest(root)
    ours = set(listed or [])
    foreign = [n for n in fixed if (root / n).exists() and n not in ours]
    if listed is None and (root / MANIFEST).exists():
        foreign.insert(0, MANIFEST)  # a file of that name that is not a manifest
    if foreign:
        raise ConfigError(
            f"refusing to overwrite {', '.join(str(root / n) for n in foreign)}: not written by an "
            f"ewc-fo export (no {MANIFEST} lists it); move it away or choose another folder"
        )
    return root


def prepare_out_dir(
    samples: fo.Dataset | fo.DatasetView,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    fixed: Iterable[str] = (),
) -> OutDir:
    """:func:`check_out_dir`, then delete only the previous export's manifest entries and
    start a new manifest."""
    root = check_out_dir(samples, out_dir, overwrite=overwrite, fixed=fixed)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create export folder {root}: {e.strerror or e}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"export folder {root} is not writable")
    previous = _read_manifest(root)
    if previous is not None:
        _remove_previous(root, previous)
    return OutDir(root.resolve())

"""Plain layouts: a folder of images (+ labels.json), class folders, a CSV of paths and labels."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from pathlib import Path

import fiftyone as fo

from ewc_fo.fo.io.importers._common import (
    DEFAULT_LABEL_FIELD,
    SPLIT_NAMES,
    _add_samples,
    _finish,
    _is_image,
    _read_labels_json,
    labeled_sample,
    log,
    make_label,
    new_dataset,
    utf8_named,
)
from ewc_fo.runtime.errors import ConfigError


def import_folder(
    name: str,
    path: str | os.PathLike,
    *,
    labels_json: str | os.PathLike | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """A folder of images (recursive), labels from ``labels.json`` in it (or ``labels_json``):
    ``{"img_001": ["cat", "dog"], ...}``; images without an entry stay unlabeled."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"image folder not found: {root}")
    lj = Path(labels_json) if labels_json else root / "labels.json"
    table, multi = _read_labels_json(lj) if lj.is_file() else ({}, False)
    ds = new_dataset(name, overwrite)
    skipped: list[Path] = []

    def gen() -> Iterator[fo.Sample]:
        for p in utf8_named(sorted(root.rglob("*")), skipped):
            if not _is_image(p):
                continue
            rel = p.relative_to(root).as_posix()
            labels = table.get(rel) or table.get(p.name) or table.get(p.stem)
            yield labeled_sample(p, label_field, labels, multi)

    _add_samples(ds, gen(), max_samples)
    _warn_skipped(skipped, root)
    return _finish(ds, label_field, str(root), "folder", skipped=len(skipped))


def import_classdirs(
    name: str,
    path: str | os.PathLike,
    *,
    label_field: str = DEFAULT_LABEL_FIELD,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """ImageNet style ``root/<class>/*.jpg`` (or ``root/<split>/<class>/...``, split as tag)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"folder not found: {root}")
    top = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    splits = bool(top) and all(d.name.lower() in SPLIT_NAMES for d in top)
    groups = [(d.name, c) for d in top for c in sorted(d.iterdir()) if c.is_dir()] if splits else [
        (None, d) for d in top
    ]
    ds = new_dataset(name, overwrite)

    skipped: list[Path] = []

    def gen() -> Iterator[fo.Sample]:
        for split, cdir in utf8_named_groups(groups, skipped):
            for p in utf8_named(sorted(cdir.rglob("*")), skipped):
                if _is_image(p):
                    s = fo.Sample(filepath=str(p.resolve()), tags=[split] if split else [])
                    s[label_field] = make_label([cdir.name], multi=False)
                    yield s

    _add_samples(ds, gen(), max_samples)
    _warn_skipped(skipped, root)
    return _finish(ds, label_field, str(root), "classdirs", skipped=len(skipped))


def utf8_named_groups(groups, skipped: list):
    """Class folders whose names are UTF-8 (a class name is stored as text)."""
    for split, cdir in groups:
        if next(utf8_named([cdir], skipped), None) is not None:
            yield split, cdir


def _warn_skipped(skipped: list[Path], root: Path) -> None:
    if skipped:
        log.warning("%d files or folders in %s have names that are not valid UTF-8 and were skipped "
                    "(rename them to import them)", len(skipped), root)


_PATH_COLS = ("filepath", "path", "image", "file", "filename", "image_path")
_LABEL_COLS = ("label", "labels", "class", "classes", "category", "categories")
_LABEL_SEP = re.compile(r"[;|]")


def import_csv(
    name: str,
    csv_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """A CSV of ``filepath,label(s)`` (header optional; several labels separated by ``;`` or
    ``|``). Relative paths are resolved against ``root`` (default: the CSV's folder). Rows
    whose image is missing are skipped with a warning."""
    cp = Path(csv_path).expanduser()
    if not cp.is_file():
        raise ConfigError(f"CSV file not found: {cp}")
    base = Path(root).expanduser() if root else cp.parent
    with open(cp, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    pi, li = 0, 1
    if rows and rows[0][0].strip().lower() in _PATH_COLS:
        head = [c.strip().lower() for c in rows.pop(0)]
        pi = next(i for i, c in enumerate(head) if c in _PATH_COLS)
        li = next((i for i, c in enumerate(head) if c in _LABEL_COLS), 1)
    parsed: list[tuple[Path, list[str]]] = []
    missing = 0
    for r in rows:
        p = Path(r[pi].strip()).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            missing += 1
            continue
        raw = r[li] if li < len(r) else ""
        labels = [x.strip() for x in _LABEL_SEP.split(raw) if x.strip()]
        parsed.append((p, labels))
    if missing:
        log.warning("%d rows of %s name missing images; skipped", missing, cp)
    multi = any(len(lab) > 1 for _, lab in parsed)
    ds = new_dataset(name, overwrite)

    def gen() -> Iterator[fo.Sample]:
        for p, labels in parsed:
            yield labeled_sample(p, label_field, labels, multi)

    _add_samples(ds, gen(), max_samples)
    return _finish(ds, label_field, str(cp), "csv")


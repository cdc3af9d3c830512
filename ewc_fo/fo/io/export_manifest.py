"""The export manifest: what an export wrote, with each file's size and SHA-256, so that
``overwrite`` deletes only files that are still exactly what the export wrote.

Why: the manifest is a plain file in a folder the user owns. Edited by hand or by a tool it
used to delete whatever it listed (issue 23: a run's maps, another dataset's images, the user's
notes). Now a listed file is deleted only if

- its name is one the exporters' own layout produces (:data:`_LAYOUT`: COCO ``labels.json``,
  ``data/*``; VOC ``JPEGImages/*.jpg``, ``Segmentation{Class,Object}/*.png``, ...), inside the
  folder; a symlink on the way to any entry refuses the whole export up front
  (:func:`symlink_on_the_way`, called by ``check_out_dir``);
- its size and SHA-256 are those recorded when the export wrote it.

Anything else is kept, with one warning line naming it.

Format v2: a header, then per file ``path`` just before it is created (an export killed half
way still lists it) and ``path<TAB>size<TAB>sha256`` once written and closed; folders end with
``/``; the last line for a path wins. A file listed without its hash (the export was killed
while writing it) cannot be verified and is kept. A v1 manifest (no hashes: ewc-fo before
issue 23) is refused, see :func:`read_manifest`.

SHA-256 rather than a faster hash: hashlib's runs at about 1 GB/s on this machine (SHA-NI; 2.5x
blake2b), far faster than images are encoded and written, needs no dependency and cannot be
matched by accident.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ewc_fo.runtime.errors import ConfigError

MANIFEST = "ewc-fo-manifest.txt"
HEADER = "# ewc-fo export manifest v2: what this export wrote (path, size, sha256); --overwrite deletes only these\n"
_V1_HEADER = "# ewc-fo export manifest v1: what this export wrote; --overwrite deletes only these"
#: every name a COCO or VOC export writes (files, then folders); a manifest line that is not
#: one of these is skipped, whatever its hash. tests/fo/test_export_manifest.py checks that both
#: exports write only such names.
_LAYOUT = re.compile(
    r"labels\.json|\.images\.json\.tmp|\.annotations\.json\.tmp|class_names\.txt|labels\.txt"
    r"|data/[^/]+|JPEGImages/[^/]+\.jpg|Segmentation(Class|Object)/[^/]+\.png|ImageSets/Segmentation/[^/]+\.txt"
    r"|(data|JPEGImages|SegmentationClass|SegmentationObject|ImageSets|ImageSets/Segmentation)/"
)
_SHA = re.compile(r"[0-9a-f]{64}")
_SIZE = re.compile(r"[0-9]{1,15}")  # not str.isdigit: "²" is a digit to it, and int() refuses it
_MAX_WARNED = 10

log = logging.getLogger(__name__)


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file."""
    with open(path, "rb") as f:
        h = hashlib.file_digest(f, "sha256")
        return os.fstat(f.fileno()).st_size, h.hexdigest()


@dataclass
class Manifest:
    """A parsed manifest: files (path -> (size, sha256), or None when never sealed), folders,
    and the lines skipped as malformed."""

    files: dict[str, tuple[int, str] | None] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def entries(self) -> list[str]:
        return [*self.files, *self.dirs]


def _plain(rel: str) -> bool:
    """Whether ``rel`` is a name the exporters write: relative, no ``..``, within the layout."""
    if len(rel) > 4096 or "\x00" in rel or "\\" in rel:
        return False
    parts = rel.rstrip("/").split("/")
    if any(p in ("", ".", "..") or len(p.encode("utf-8", "replace")) > 255 for p in parts):
        return False
    return _LAYOUT.fullmatch(rel) is not None


def read_manifest(root: Path) -> Manifest | None:
    """The manifest in ``root``; None if there is none. Refused (:class:`ConfigError`): a
    symlink, a file that is not a v2 manifest, and a v1 manifest: it lists names without hashes,
    so a file the user put there since cannot be told from the export's, and deleting by name
    is what the manifest attack used. Such a folder must be emptied by hand once."""
    m = root / MANIFEST
    if m.is_symlink():  # writing it would follow the link out of the folder
        raise ConfigError(f"refusing to use {m}: it is a symlink, not a manifest an ewc-fo export wrote; "
                          "remove it or choose another folder")
    if not m.exists():
        return None
    try:
        with open(m, "rb") as f:
            lines = f.read(64 << 20).decode("utf-8", "replace").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read {m}: {e.strerror or e}") from None
    head = lines[0] if lines else ""
    if head == _V1_HEADER:
        raise ConfigError(f"{m} was written by an earlier ewc-fo without file hashes, so what it lists cannot be "
                          f"told from files changed since; empty {root} by hand (or choose another folder)")
    if head != HEADER.strip():
        raise ConfigError(f"refusing to overwrite {m}: not written by an ewc-fo export (not a {MANIFEST}); "
                          "move it away or choose another folder")
    man = Manifest()
    for ln in lines[1:]:
        if not ln or ln.startswith("#"):
            continue
        rel, *rest = ln.split("\t")
        ok = _plain(rel) and (
            (rel.endswith("/") and not rest)
            or (not rel.endswith("/") and (not rest or (len(rest) == 2 and _SIZE.fullmatch(rest[0]) and _SHA.fullmatch(rest[1]))))
        )
        if not ok:
            man.skipped.append(ln)
        elif rel.endswith("/"):
            if rel.rstrip("/") not in man.dirs:
                man.dirs.append(rel.rstrip("/"))
        else:
            man.files[rel] = (int(rest[0]), rest[1]) if rest else None
    if man.skipped:
        s = man.skipped[0]
        log.warning("skipping %d malformed line(s) of %s (not a name an ewc-fo export writes), e.g. %r",
                    len(man.skipped), m, s if len(s) <= 60 else s[:60] + "...")
    return man


def symlink_on_the_way(root: Path, rel: str) -> Path | None:
    """The first symlink among ``root/rel`` and its folders below ``root``, or None."""
    p = root
    for part in rel.rstrip("/").split("/"):
        p = p / part
        try:
            if stat.S_ISLNK(os.lstat(p).st_mode):
                return p
        except OSError:  # missing (nothing further down exists either) or not a name the OS takes
            return None
    return None


def why_kept(root: Path, rel: str, rec: tuple[int, str] | None) -> str | None:
    """None if ``root/rel`` may be deleted (exactly what the export wrote, or already gone),
    else why it is kept, in words."""
    p = root / rel
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return "it is not a plain file"
    if rec is None:
        return "it has no recorded hash (the export writing it was interrupted)"
    if st.st_size != rec[0] or file_digest(p) != rec:
        return "it changed since the export wrote it"
    return None


def remove_previous(root: Path, man: Manifest) -> None:
    """Delete the previous export's files that are still what it wrote, then its folders that
    are now empty; warn (one line each, the first few) about every listed file kept."""
    kept: list[str] = []
    for rel, rec in man.files.items():
        try:
            why = why_kept(root, rel, rec)
            if why is None:
                (root / rel).unlink(missing_ok=True)
            else:
                kept.append(f"{root / rel}: {why}")
        except OSError as e:
            kept.append(f"{root / rel}: {e.strerror or e}")
    for line in kept[:_MAX_WARNED]:
        log.warning("kept %s", line)
    if len(kept) > _MAX_WARNED:
        log.warning("kept %d more files the previous export listed (changed since, or unverifiable)",
                    len(kept) - _MAX_WARNED)
    for rel in sorted(man.dirs, key=lambda d: -d.count("/")):
        p = root / rel
        try:
            if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
                p.rmdir()
        except OSError:
            pass  # not empty after all, or gone: nothing to clean
    (root / MANIFEST).unlink(missing_ok=True)


class OutDir:
    """An export folder being written: every path goes through :meth:`file` / :meth:`folder`,
    which record it in the manifest first; :meth:`seal` records a written file's size and hash,
    :meth:`finish` those of every file not sealed yet."""

    def __init__(self, root: Path):
        self.root = root
        self._unsealed: dict[Path, str] = {}
        # O_NOFOLLOW: a symlink planted there since the check is not followed out of the folder
        fd = os.open(root / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(HEADER)

    def _record(self, line: str) -> None:
        # appended and closed per entry: an export killed half way still lists all it wrote
        with open(self.root / MANIFEST, "a") as f:
            f.write(line + "\n")

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
        rel = Path(*parts).as_posix()
        self._record(rel)
        self._unsealed[p] = rel
        return p

    def seal(self, *paths: Path) -> None:
        """Record the size and SHA-256 of files this export has finished writing."""
        for p in paths:
            rel = self._unsealed.pop(p, None)
            if rel is not None and p.is_file() and not p.is_symlink():
                size, digest = file_digest(p)
                self._record(f"{rel}\t{size}\t{digest}")

    def finish(self) -> None:
        """Seal every file still open to the export (also when it stops half way: what is on
        disk then is what it wrote)."""
        self.seal(*list(self._unsealed))

    @contextmanager
    def sealing(self, f: IO) -> Iterator[IO]:
        """``with`` an open file of the export: on leaving (also by an exception or Ctrl-C) it
        is closed and every unsealed file is sealed (:meth:`finish`)."""
        try:
            with f:
                yield f
        finally:
            self.finish()

    def taken(self, *parts: str) -> set[str]:
        """Lower-cased names already in folder ``root/parts`` (not ours: ours were removed), to
        seed the unique-name sets so per-image files never land on a foreign file."""
        d = self.root.joinpath(*parts)
        return {c.name.lower() for c in d.iterdir()} if d.is_dir() else set()

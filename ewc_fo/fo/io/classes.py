"""Class lists with fixed ids: the standard VOC list, and lists a user names for an export.

An export that numbers classes by the run's own order gives ids no other pipeline
expects (a run that saw no potted plant would make sofa 16, not 18). These helpers
read the id table the user wants instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from ewc_fo.runtime.errors import ConfigError

VOID = 255  # uint8 masks' "ignore" value: never a class id

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


def _from_mapping(raw: dict, where: str) -> dict[int, str]:
    try:
        return {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: a class table maps integer ids to names") from None


def read_class_table(source: str, mask_targets: dict | None = None) -> dict[int, str]:
    """``{id: name}`` (0 = background) from ``"voc"``, a file, or a ``mask_targets`` field.

    A file is one name per line (line index = id, background first, as VOC's
    ``class_names.txt``), or JSON: a list (index = id), ``{"classes": [...]}`` or
    ``{id: name}``. Otherwise ``source`` names a field of ``mask_targets``.
    """
    if source.lower() == "voc":
        return dict(enumerate(VOC_CLASSES))
    p = Path(source).expanduser()
    if p.is_file():
        text = p.read_text()
        try:
            raw = json.loads(text)
        except ValueError:
            raw = [ln.strip() for ln in text.splitlines()]
            while raw and not raw[-1]:
                raw.pop()
        if isinstance(raw, dict) and "classes" in raw:
            raw = raw["classes"]
        if isinstance(raw, dict):
            return _from_mapping(raw, str(p))
        if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            return {i: n for i, n in enumerate(raw) if n}
        raise ConfigError(f"{p}: not a class list (one name per line, a JSON list or {{id: name}})")
    targets = mask_targets or {}
    if source in targets:
        return _from_mapping(dict(targets[source]), f"mask_targets[{source!r}]")
    have = ", ".join(sorted(targets)) or "none"
    raise ConfigError(
        f"--classes {source!r} is not 'voc', a file, or a mask_targets field (fields with mask targets: {have})"
    )


def is_voc(names) -> bool:
    """Whether every name is one of VOC's 20 object classes (so VOC's ids fit)."""
    names = set(names)
    return bool(names) and names <= set(VOC_CLASSES[1:])


def output_classes(
    run_classes: dict[int, str], classes: str | dict | None, mask_targets: dict | None, voc_default: bool
) -> tuple[dict[int, str], dict[int, int]]:
    """An export's class table ``{id: name}`` (no background) and ``{run id: export id}``.

    ``run_classes`` is the run's own ``{id: name}``; ``classes`` is ``"voc"``, a file, a
    ``mask_targets`` field name or a ``{id: name}`` dict (see :func:`read_class_table`);
    without it, VOC's standard ids when ``voc_default`` and the run's classes are all VOC's,
    else the run's own ids.
    """
    names = list(run_classes.values())
    if classes is None and voc_default and is_voc(names):
        classes = "voc"
    if classes is None:
        return dict(run_classes), {k: k for k in run_classes}
    if isinstance(classes, dict):
        table = {int(k): str(v) for k, v in classes.items()}
    else:
        table = read_class_table(str(classes), mask_targets)
    table = {k: v for k, v in table.items() if k not in (0, VOID)}
    ids = {v: k for k, v in sorted(table.items(), reverse=True)}  # a repeated name keeps its first id
    missing = [n for n in names if n not in ids]
    if missing:
        raise ConfigError(
            f"the run's classes {', '.join(missing[:10])} are not in the class list {classes!r} "
            f"({len(table)} classes); give a list that has them"
        )
    if min(table, default=1) < 0:
        raise ConfigError("class ids must be positive")
    return dict(sorted(table.items())), {k: ids[v] for k, v in run_classes.items()}

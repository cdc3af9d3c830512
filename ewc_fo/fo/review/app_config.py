"""What the App shows when it opens a labeled dataset: ``dataset.app_config`` for a run.

A label run calls :func:`configure_app` once at its end, so the grid opens with the run's
mask, its confidence and the image-level labels visible, every class drawn in its own colour
(the same colour in the run's mask, its instances, the labels and any ground-truth mask), and
the run's fields in a sidebar group of their own.

It only ever adds: a user's active fields, sidebar groups and colours are kept as they are
(a class the user already coloured keeps that colour everywhere), and a run re-done or resumed
finds the colours it gave before. Deleting a run (:func:`forget_run`) takes back its sidebar
group and nothing else.
"""

from __future__ import annotations

import zlib

import fiftyone as fo

#: distinct, saturated colours that stay visible over photos (no dark, grey or brown ones)
PALETTE = (
    "#00B7C3", "#F3C300", "#E6007E", "#8DB600", "#F38400", "#1E90FF", "#BE0032", "#00C77B",
    "#A05CC8", "#FF6F91", "#DCD300", "#0067A5", "#E25822", "#A1CAF1", "#B3446C", "#F6A600",
    "#00FFFF", "#FF00FF", "#7FFF00", "#FF4500",
)


def sidebar_group_name(prefix: str) -> str:
    return f"ewc-fo {prefix}"


def class_colors(names: list[str], taken: dict[str, str] | None = None) -> dict[str, str]:
    """A colour per class name, stable: it depends on the name (a hash into :data:`PALETTE`),
    moving to the next free palette entry only when another class of the dataset holds it.
    ``taken`` (name -> colour) are colours already given, kept as they are."""
    out = dict(taken or {})
    used = set(out.values())
    for name in sorted(set(names) - set(out)):
        start = zlib.crc32(name.encode("utf-8")) % len(PALETTE)
        for k in range(len(PALETTE)):
            c = PALETTE[(start + k) % len(PALETTE)]
            if c not in used:
                break
        else:  # more classes than colours: share, still stable
            c = PALETTE[start]
        out[name] = c
        used.add(c)
    return out


def _mask_targets(dataset: fo.Dataset) -> dict[str, dict[int, str]]:
    """Segmentation fields with string class targets -> {pixel value: class}."""
    out = {}
    for path, f in dataset.get_field_schema().items():
        if getattr(f, "document_type", None) is not fo.Segmentation:
            continue
        targets = dataset.mask_targets.get(path) or dataset.default_mask_targets or {}
        named = {int(k): str(v) for k, v in targets.items() if str(k).isdigit() and int(k) > 0}
        if named:
            out[path] = named
    return out


def _existing_colors(fields: list[dict], targets: dict[str, dict[int, str]]) -> dict[str, str]:
    """Class -> colour from what the scheme already holds (the user's choices first)."""
    known: dict[str, str] = {}
    for entry in fields:
        names = targets.get(entry.get("path"), {})
        for m in entry.get("maskTargetsColors") or []:
            if m.get("intTarget") in names and m.get("color"):
                known.setdefault(names[m["intTarget"]], m["color"])
        for v in entry.get("valueColors") or []:
            if v.get("value") is not None and v.get("color"):
                known.setdefault(str(v["value"]), v["color"])
    return known


def _entry(fields: list[dict], path: str) -> dict:
    for e in fields:
        if e.get("path") == path:
            return e
    e = {"path": path}
    fields.append(e)
    return e


def _color_scheme(dataset: fo.Dataset, value_paths: list[str]) -> fo.ColorScheme:
    """The dataset's colour scheme with every mask class (and the run's label values) coloured."""
    scheme = dataset.app_config.color_scheme or fo.ColorScheme()
    if scheme.color_by is None:
        scheme.color_by = "value"
    fields = [dict(f) for f in (scheme.fields or [])]
    targets = _mask_targets(dataset)
    names = sorted({n for t in targets.values() for n in t.values()})
    colors = class_colors(names, _existing_colors(fields, targets))
    for path, t in targets.items():
        e = _entry(fields, path)
        have = {m.get("intTarget") for m in e.get("maskTargetsColors") or []}
        e["maskTargetsColors"] = list(e.get("maskTargetsColors") or []) + [
            {"intTarget": i, "color": colors[n]} for i, n in sorted(t.items()) if i not in have]
    for path in value_paths:  # image-level labels and instances: the same colour per class
        e = _entry(fields, path)
        e.setdefault("colorByAttribute", "label")
        have = {v.get("value") for v in e.get("valueColors") or []}
        e["valueColors"] = list(e.get("valueColors") or []) + [
            {"value": n, "color": c} for n, c in sorted(colors.items()) if n not in have]
    scheme.fields = fields
    return scheme


def run_class_colors(dataset: fo.Dataset, prefix: str = "ewc") -> dict[str, str]:
    """Class name -> the colour run ``prefix``'s classes have in the dataset's colour scheme
    (``P_mask``'s ``maskTargetsColors``, else any other field's): what every picture and panel
    draws, so a class looks the same in the App, the review panel and the PNGs."""
    scheme = dataset.app_config.color_scheme
    fields = [dict(f) for f in ((scheme.fields if scheme else None) or [])]
    targets = _mask_targets(dataset)
    mine = targets.get(f"{prefix}_mask", {})
    known: dict[str, str] = {}
    for m in _entry([*fields], f"{prefix}_mask").get("maskTargetsColors") or []:
        if m.get("intTarget") in mine and m.get("color"):
            known[mine[m["intTarget"]]] = m["color"]
    for n, c in _existing_colors(fields, targets).items():
        known.setdefault(n, c)
    return class_colors(sorted(set(mine.values())), known)


def hex_rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[k:k + 2], 16) for k in (1, 3, 5))


def configure_app(dataset: fo.Dataset, prefix: str, label_field: str, run_fields: list[str]) -> None:
    """Add the run ``prefix`` to ``dataset.app_config`` (active fields, colours, a sidebar group).

    ``run_fields``: every field the run wrote (from its run record). Saves the dataset's App config.
    """
    schema = dataset.get_field_schema()
    run_fields = [f for f in run_fields if f in schema]
    cfg = dataset.app_config
    mask, conf, inst = f"{prefix}_mask", f"{prefix}_confidence", f"{prefix}_instances"

    # active fields: this run's mask, confidence and classes, the image-level labels; the
    # older runs' fields this tool switched on go off (one run on screen), the user's stay
    show = [f for f in (label_field, mask, conf, f"{prefix}_classes") if f in schema]
    state = _plugin_state(cfg)
    switched_on = state.setdefault("activated", {})
    hide = [p for other, paths in switched_on.items() if other != prefix for p in paths if p not in show]
    if cfg.active_fields is None:  # the App's default, without the instances the mask already shows
        base = fo.DatasetAppConfig.default_active_fields(dataset)
        added = [p for p in show if p not in base.paths]
        cfg.active_fields = fo.ActiveFields(
            paths=[p for p in base.paths if p != inst] + added)
        added += [p for p in base.paths if p in show]  # the App's default would show older runs too
    elif cfg.active_fields.exclude:
        added = [p for p in show if p in cfg.active_fields.paths]
        cfg.active_fields.paths = [p for p in cfg.active_fields.paths if p not in show] + [
            p for p in hide if p not in cfg.active_fields.paths]
    else:
        added = [p for p in show if p not in cfg.active_fields.paths]
        cfg.active_fields.paths = [p for p in cfg.active_fields.paths if p not in hide] + added
    for other in list(switched_on):
        if other != prefix:
            switched_on[other] = []
    switched_on[prefix] = sorted(set(switched_on.get(prefix, [])) | {p for p in added if p != label_field})
    state["newest"] = prefix
    _store_state(cfg, state)

    # a sidebar group per run, holding the run's fields (moved out of the default groups)
    groups = cfg.sidebar_groups or fo.DatasetAppConfig.default_sidebar_groups(dataset)
    name = sidebar_group_name(prefix)
    mine = set(run_fields)
    for g in groups:
        if g.name != name:
            g.paths = [p for p in g.paths if p not in mine]
    order = [mask, conf, f"{prefix}_agreement", f"{prefix}_class_confidence", inst]
    paths = [p for p in order if p in mine] + sorted(mine - set(order))
    existing = next((g for g in groups if g.name == name), None)
    if existing is None:
        at = next((i + 1 for i, g in enumerate(groups) if g.name == "labels"), len(groups))
        groups.insert(at, fo.SidebarGroupDocument(name=name, paths=paths, expanded=True))
    else:
        existing.paths = list(existing.paths) + [p for p in paths if p not in existing.paths]
    cfg.sidebar_groups = groups

    cfg.color_scheme = _color_scheme(dataset, [p for p in (label_field, inst, f"{prefix}_classes") if p in schema])
    dataset.save()


#: key of this tool's state in ``dataset.app_config.plugins``
PLUGIN_KEY = "ewc-fo"


def _plugin_state(cfg: fo.DatasetAppConfig) -> dict:
    """What ewc-fo remembers in the App config: the fields it switched on, per run (so it
    switches off only those, never one the user turned on), and the newest run."""
    state = dict((cfg.plugins or {}).get(PLUGIN_KEY) or {})
    state["activated"] = {k: list(v) for k, v in (state.get("activated") or {}).items()}
    return state


def _store_state(cfg: fo.DatasetAppConfig, state: dict) -> None:
    """Assign the whole ``plugins`` dict (an in-place change of a nested dict is not saved)."""
    cfg.plugins = {**(cfg.plugins or {}), PLUGIN_KEY: state}


def newest_run(dataset: fo.Dataset) -> str | None:
    """The run the App shows: the one most recently added to the App config."""
    return ((dataset.app_config.plugins or {}).get(PLUGIN_KEY) or {}).get("newest")


def forget_run(dataset: fo.Dataset, prefix: str, run_fields: list[str]) -> None:
    """Take run ``prefix``'s sidebar group out of ``dataset.app_config`` as the run is deleted
    (FiftyOne drops deleted fields from the groups, not the emptied group). Fields of the
    user's own that were moved into it stay there; other groups are not touched. Saves the
    dataset's App config if it changed."""
    cfg = dataset.app_config
    name, mine = sidebar_group_name(prefix), set(run_fields)
    state = (cfg.plugins or {}).get(PLUGIN_KEY) or {}
    if prefix in (state.get("activated") or {}) or state.get("newest") == prefix:
        state = _plugin_state(cfg)
        state["activated"].pop(prefix, None)
        if state.get("newest") == prefix:
            state.pop("newest")
        _store_state(cfg, state)
        dataset.save()
    if not any(g.name == name for g in cfg.sidebar_groups or []):
        return
    groups = []
    for g in cfg.sidebar_groups:
        if g.name == name:
            g.paths = [p for p in g.paths if p not in mine]
            if not g.paths:
                continue
        groups.append(g)
    cfg.sidebar_groups = groups
    dataset.save()

"""Helpers shared by subcommands: loading a dataset or one of its saved views, and checking
a label field, with a clear error for each mistake (FiftyOne only, no torch)."""

from __future__ import annotations

import argparse
import sys

from ewc_fo.runtime.errors import ConfigError, UnknownClassError

LABEL_TYPES = {"Classification": "single-label", "Classifications": "multi-label"}


def add_dataset_args(p: argparse.ArgumentParser, required: argparse._ArgumentGroup | None = None) -> None:
    (required or required_group(p)).add_argument("dataset", help="name of the FiftyOne dataset")
    p.add_argument("--view", default=None, help="name of a saved view of the dataset to use instead")


def required_group(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """A help section, listed first, of what the command cannot run without."""
    group = p.add_argument_group("required arguments")
    p._action_groups.insert(0, p._action_groups.pop())
    return group


def load_view(name: str, view: str | None = None):
    """Return the dataset (or its saved view) with a clear error if either is missing."""
    from ewc_fo.commands._lookup import early_check

    early_check(name)  # a typo answered from one query, before FiftyOne loads
    import fiftyone as fo

    from ewc_fo.fo.database import fail_fast

    fail_fast()  # a stopped database: a one-line error in seconds, not a 30 s hang
    if not fo.dataset_exists(name):
        from ewc_fo.commands._lookup import did_you_mean

        names = fo.list_datasets()
        raise ConfigError(f"no FiftyOne dataset named {name!r}{did_you_mean(name, names)} "
                          f"(datasets: {', '.join(names) or 'none'})")
    ds = fo.load_dataset(name)
    if view:
        if not ds.has_saved_view(view):
            raise ConfigError(f"dataset {name!r} has no saved view {view!r} "
                              f"(saved views: {', '.join(ds.list_saved_views()) or 'none'})")
        return ds.load_saved_view(view)
    return ds


def check_label_field(view, field: str) -> str:
    """``field`` must hold image-level labels: returns ``"Classification"`` or
    ``"Classifications"``; otherwise the error names the type found, the types expected and
    the fields of the dataset that would do."""
    schema = view.get_field_schema()
    doc = {k: getattr(getattr(f, "document_type", None), "__name__", None) for k, f in schema.items()}
    from ewc_fo.commands._lookup import did_you_mean, run_output_fields

    mine = run_output_fields(list(doc))  # P_classes is a run's output, not the user's labels
    fits = [k for k, d in doc.items() if d in LABEL_TYPES and k not in mine]
    hint = f"fields that would do: {', '.join(fits)}" if fits else \
        "this dataset has no such field (ewc-fo create makes one)"
    if field not in schema:
        raise ConfigError(f"no field {field!r} on this dataset{did_you_mean(field, fits)}; --label-field needs an "
                          f"fo.Classification or fo.Classifications field; {hint}")
    if doc[field] not in LABEL_TYPES:
        got = doc[field] or type(schema[field]).__name__
        raise ConfigError(f"field {field!r} holds {got}; --label-field needs fo.Classification "
                          f"(single-label) or fo.Classifications (multi-label); {hint}")
    return doc[field]


def view_classes(view, field: str, kind: str) -> list[str]:
    """The distinct class names in ``field`` over ``view``."""
    path = f"{field}.label" if kind == "Classification" else f"{field}.classifications.label"
    return sorted(str(c) for c in view.distinct(path) if c)


def check_classes(present: list[str], known: tuple[str, ...] | None, classifier: str) -> None:
    """No class known to the classifier is an error; some unknown is a one-line warning (their
    samples are recorded as ``unknown_class`` failures, the rest is labelled)."""
    if known is None or not present:
        return
    known_set = set(known)
    unknown = [c for c in present if c not in known_set]
    if len(unknown) == len(present):
        raise UnknownClassError(
            f"none of the dataset's classes ({', '.join(present[:6])}{'...' if len(present) > 6 else ''}) "
            f"is a class of classifier {classifier!r}; fit one on your labels first: "
            f"ewc-fo fit DATASET --label-field FIELD --out model.safetensors"
        )
    if unknown:
        print(f"warning: {len(unknown)} of {len(present)} classes are unknown to classifier {classifier!r} "
              f"({', '.join(unknown[:6])}{'...' if len(unknown) > 6 else ''}); their samples will be "
              "marked unknown_class", file=sys.stderr)


def add_selection_args(p: argparse.ArgumentParser, classes: bool = True) -> None:
    """``--tags``, ``--with-classes``, ``--limit`` and ``--save-view``: pick a subset without
    making a saved view first (and optionally save it as one)."""
    g = p.add_argument_group("selection (applied to the dataset or --view)")
    g.add_argument("--tags", default=None, metavar="T1,T2",
                   help="only samples with any of these comma-separated tags")
    if classes:
        g.add_argument("--with-classes", default=None, metavar="C1,C2",
                       help="only samples whose --label-field has any of these comma-separated classes")
    from ewc_fo.commands._checks import positive_int

    g.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="only the first N samples (after the other filters)")
    g.add_argument("--save-view", default=None, metavar="NAME",
                   help="also save the selection as a saved view (App, plugin, or --view NAME later)")


def _names(text: str | None, what: str) -> list[str]:
    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    if text is not None and not names:
        raise ConfigError(f"{what} is empty: give comma-separated names")
    return names


def select_view(view, args, label_field: str | None = None):
    """Apply the selection options of :func:`add_selection_args` to ``view``.

    Uses FiftyOne's own stages (``match_tags``, ``match_labels``, ``limit``), so the result
    is an ordinary view that can be saved. An empty selection is an error, not a no-op run.
    """
    from fiftyone import ViewField as F

    tags = _names(getattr(args, "tags", None), "--tags")
    classes = _names(getattr(args, "with_classes", None), "--with-classes")
    limit = getattr(args, "limit", None)
    save = getattr(args, "save_view", None)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    if tags:
        view = view.match_tags(tags)
    if classes:
        if not label_field:
            raise ConfigError("--with-classes needs --label-field (the field whose classes to match)")
        if label_field not in view.get_field_schema():
            raise ConfigError(f"no field {label_field!r} to match --with-classes against")
        view = view.match_labels(filter=F("label").is_in(classes), fields=label_field)
    if limit is not None:
        view = view.limit(limit)
    if (tags or classes or limit is not None) and len(view) == 0:
        raise ConfigError("the selection (--tags/--with-classes/--limit) matches no samples")
    if save:
        ds, view = view._dataset, view.view()

        def stages(v):
            return v._serialize(include_uuids=False)

        if ds.has_saved_view(save):
            if stages(ds.load_saved_view(save)) != stages(view):
                raise ConfigError(f"dataset {ds.name!r} already has a different saved view {save!r}; "
                                  "pick another --save-view name")
        else:
            from ewc_fo.fo.runs.claims import schema_lock

            with schema_lock(ds):  # saved views live in the dataset document (docs/concurrency.md)
                ds.save_view(save, view)
            print(f"saved view {save!r} ({len(view)} samples): use --view {save}")
    return view

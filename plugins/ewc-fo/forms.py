"""Form parts shared by the operators: each adds its inputs and returns what the user chose."""

from __future__ import annotations

import os
import re

import fiftyone.operators.types as types

from ._common import FormError

PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
#: no number a form takes is larger (the CLI's bound, ewc_fo.commands._checks.MAX_INT): beyond
#: it a value is a typo, and it would overflow the database's 64-bit integers after work began
MAX_NUMBER = 10**9


def label_fields(dataset) -> list[str]:
    """Fields holding image-level labels (what a run can explain)."""
    from ewc_fo.fo.runs.label_inputs import _label_type

    schema = dataset.get_field_schema()
    return [k for k, v in schema.items() if _label_type(v) is not None]


def segmentation_fields(dataset) -> list[str]:
    import fiftyone as fo

    schema = dataset.get_field_schema()
    return [k for k, v in schema.items() if getattr(v, "document_type", None) is fo.Segmentation]


def runs(dataset) -> list[str]:
    from ewc_fo.fo.review.summary import list_ewc_runs

    return list_ewc_runs(dataset)


def invalid(prop, message: str):
    prop.invalid = True
    prop.error_message = message
    return prop


def error(inputs, name: str, label: str, description: str = "") -> None:
    inputs.view(name, types.Error(label=label, description=description))


def to_number(value, kind=int, label: str = "value", lo=None, hi=None):
    """``value`` as ``kind`` within [lo, hi], or a :class:`FormError` with a one-line message."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):  # JSON true is not a number
            raise TypeError
        f = float(value)
        if f != f:  # nan
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise FormError(f"{label}: {'a whole number' if kind is int else 'a number'} is needed, "
                        f"got {value!r}") from None
    if not abs(f) <= MAX_NUMBER:
        raise FormError(f"{label}: must be at most {MAX_NUMBER} in size, got {value!r}")
    if kind is int and f != int(f):
        raise FormError(f"{label}: a whole number is needed, got {value!r}")
    v = kind(f)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise FormError(f"{label}: must be {rng}, got {v}")
    return v


def checked_number(ctx, prop, key: str, kind=int, lo=None, hi=None):
    """Validate ``ctx.params[key]`` as the form is filled: flags the field, never raises."""
    try:
        return to_number(ctx.params.get(key), kind, key, lo, hi)
    except FormError as e:
        invalid(prop, str(e).split(": ", 1)[-1])
        return None


def label_field_input(ctx, inputs, name="label_field") -> str | None:
    fields = label_fields(ctx.dataset)
    if not fields:
        error(inputs, f"{name}_missing", "No image-level labels",
              "This dataset has no fo.Classification / fo.Classifications field to explain.")
        return None
    choices = types.DropdownView()
    for f in fields:
        choices.add_choice(f, label=f)
    inputs.enum(name, choices.values(), default=fields[0], required=True, label="Label field",
                description="Image-level labels to turn into masks", view=choices)
    return ctx.params.get(name) or fields[0]


def prefix_input(ctx, inputs, default="ewc", must_exist=False) -> str | None:
    have = runs(ctx.dataset)
    if must_exist:
        if not have:
            error(inputs, "prefix_missing", "No ewc-fo run on this dataset",
                  "Run 'Compute EWC explanations and masks' first.")
            return None
        choices = types.DropdownView()
        for r in have:
            choices.add_choice(r, label=r)
        inputs.enum("prefix", choices.values(), default=have[0], required=True, label="Run (prefix)",
                    view=choices)
        return ctx.params.get("prefix") or have[0]
    prop = inputs.str("prefix", default=default, label="Prefix",
                      description="Names every field the run writes (<prefix>_mask, ...)")
    prefix = ctx.params.get("prefix", default)
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        invalid(prop, "start with a letter; letters, digits and _ only (max 40)")
        return None
    return prefix


def explainers_input(ctx, inputs) -> list[str]:
    from ewc_fo.engine.explainers import list_explainers
    from ewc_fo.engine.pipeline import DEFAULT_EXPLAINERS

    available = list_explainers()
    view = types.AutocompleteView(allow_user_input=False, allow_duplicates=False)
    for e in available:
        view.add_choice(e, label=e)
    prop = inputs.list("explainers", types.String(), default=list(DEFAULT_EXPLAINERS),
                       label="Explainers", description="Maps to fuse, weighted by their per-image scores",
                       view=view)
    chosen = ctx.params.get("explainers") or list(DEFAULT_EXPLAINERS)
    if not isinstance(chosen, list) or not all(isinstance(e, str) for e in chosen):
        invalid(prop, f"a list of explainer names is needed, got {chosen!r}"[:200])
        return list(DEFAULT_EXPLAINERS)
    bad = [e for e in chosen if str(e).partition("@")[0] not in available]
    if bad:
        invalid(prop, f"unknown explainer(s): {', '.join(bad)}")
    elif len(set(chosen)) != len(chosen):
        invalid(prop, "an explainer is listed twice")
    return chosen


def segmenter_input(ctx, inputs) -> None:
    choices = types.RadioGroup(orientation="horizontal")
    for s, d in (("auto", "SAM2 if a checkpoint is known, else GrabCut"), ("grabcut", "OpenCV, offline"),
                 ("sam2", "frozen SAM2, needs a checkpoint"),
                 ("sam-onnx", "MobileSAM on onnxruntime (scripts/setup.sh installs it; or $EWC_SAM_ONNX)")):
        choices.add_choice(s, label=s, description=d)
    inputs.enum("segmenter", choices.values(), default="auto", label="Segmenter", view=choices)
    seg = ctx.params.get("segmenter", "auto")
    prop = inputs.str("sam2_checkpoint", label="SAM2 checkpoint", required=False,
                      description="Local .pt or a Hugging Face id (facebook/sam2.1-hiera-tiny); "
                                  "default $EWC_SAM2_CHECKPOINT")
    ckpt = ctx.params.get("sam2_checkpoint")
    if seg == "sam2" and not ckpt and not os.environ.get("EWC_SAM2_CHECKPOINT"):
        invalid(prop, "segmenter sam2 needs a checkpoint (or choose auto / grabcut)")
    elif ckpt and ckpt.endswith((".pt", ".pth")) and not os.path.exists(ckpt):
        invalid(prop, f"no such file: {ckpt}")

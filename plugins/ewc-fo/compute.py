"""Explanations, confidence and masks for the target samples (``ewc_fo.label``)."""

from __future__ import annotations

import re

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._common import Progress, call, execution_options, finish, hf_token, md, one_line_errors
from .export import confine_write
from .forms import (
    checked_number,
    error,
    explainers_input,
    invalid,
    label_field_input,
    prefix_input,
    segmenter_input,
    to_number,
)

#: the form's 0-1 method knobs: (EWCConfig field, label, description)
KNOBS = (
    ("class_competition", "Class competition",
     "0-1: how much a class's maps give way where another class of the image is stronger"),
    ("mask_weight", "Mask votes", "0-1: how much each explainer votes with the mask its own map prompted"),
    ("objectness", "Objectness",
     "0-1: how much every map is lowered where U²-Net-p sees no object (0 = off; docs/method.md 1c)"),
    ("objectness_labels", "Labels from objectness",
     "0 to below 1: pixels whose U²-Net-p objectness reaches this go to the class with the most evidence, "
     "the rest to background (0 = off: masks from the segmenter; docs/method.md 1c)"),
)
#: what ``ray.init(address=...)`` takes: 'auto', 'local', host:port, ray://host:port
RAY_ADDRESS_RE = re.compile(r"^(auto|local|(ray://)?[A-Za-z0-9_.\-]+:\d{1,5}|ray://[A-Za-z0-9_.\-]+)$")
#: knobs that load the U²-Net-p model when above 0
OBJECTNESS_KNOBS = ("objectness", "objectness_labels")


def compute_form(ctx, inputs) -> tuple[str | None, str | None]:
    """Every input of the compute form, in order; returns (label field, prefix) when valid."""
    from ewc_fo.commands._checks import MAX_BATCH_SIZE
    from ewc_fo.engine.pipeline import EWCConfig
    from ewc_fo.runtime.errors import ConfigError
    from ewc_fo.runtime.limits import MAX_INPUT_SIZE, MIN_INPUT_SIZE

    inputs.view_target(ctx, action_description="Label")
    field = label_field_input(ctx, inputs)
    prefix = prefix_input(ctx, inputs)
    classifier_input(ctx, inputs)
    explainers_input(ctx, inputs)
    segmenter_input(ctx, inputs)
    size = inputs.int("explain_size", required=False, label="Explain size",
                      description="Square side fed to the classifier (empty: the classifier's own)")
    checked_number(ctx, size, "explain_size", int, lo=MIN_INPUT_SIZE, hi=MAX_INPUT_SIZE)
    for key, label, desc in KNOBS:
        prop = inputs.float(key, default=getattr(EWCConfig, key), label=label, description=desc)
        knob_check(ctx, prop, key)
    bs = inputs.int("batch_size", default=4, label="Batch size", description="Images per pass")
    checked_number(ctx, bs, "batch_size", int, lo=1, hi=MAX_BATCH_SIZE)
    inputs.bool("overwrite", default=False, label="Overwrite",
                description="Delete this prefix's previous run (its fields, files and views) first")
    prop = inputs.str("output_dir", required=False, label="Output directory",
                      description="Where masks and maps are written (default: next to the dataset); "
                                  "under the export root or ewc-fo's folder of the dataset directory")
    if ctx.params.get("output_dir") not in (None, ""):
        try:
            confine_write(ctx, ctx.params["output_dir"], "output directory")
        except ConfigError as e:
            invalid(prop, str(e))
    ray_inputs(ctx, inputs)
    return field, prefix


def classifier_input(ctx, inputs) -> None:
    """The classifier, defaulting to the dataset's most recent fitted one (the form says which);
    a checkpoint path that does not exist or a name nobody knows is flagged as it is typed."""
    from ewc_fo.commands._checks import classifier_classes
    from ewc_fo.fo.fitted import default_classifier
    from ewc_fo.runtime.errors import EWCError

    default, line = default_classifier(ctx.dataset)
    prop = inputs.str("classifier", default=default, label="Classifier",
                      description=f"efficientnet_lite0, torchvision:<name>, timm:<name> or a fitted checkpoint. "
                                  f"Default {line}")
    value = ctx.params.get("classifier") or default
    if not isinstance(value, str):
        invalid(prop, f"a classifier name or checkpoint path is needed, got {value!r}")
        return
    try:
        classifier_classes(value)
    except EWCError as e:
        invalid(prop, str(e).replace("--classifier ", ""))


def _default_classifier(ctx) -> str:
    from ewc_fo.fo.fitted import default_classifier

    return default_classifier(ctx.dataset)[0]


def knob_check(ctx, prop, key: str) -> None:
    """Flag a method knob as the form is filled, with the engine's own rule (EWCConfig), and
    an objectness knob when the U²-Net-p model is not installed on the server."""
    from ewc_fo.engine.pipeline import EWCConfig
    from ewc_fo.runtime.errors import ConfigError

    v = checked_number(ctx, prop, key, float, lo=0, hi=1)
    if v is None:
        return
    try:
        EWCConfig(**{key: v})
    except ConfigError as e:
        invalid(prop, str(e))
        return
    if v > 0 and key in OBJECTNESS_KNOBS:
        from ewc_fo.models.objectness import require_objectness

        try:
            require_objectness()  # fetched once when the server is online
        except ConfigError as e:
            invalid(prop, f"needs the U²-Net-p objectness model on the server: {e}")


def ray_inputs(ctx, inputs) -> None:
    """Where to run: in this process (empty), or on a Ray cluster (docs/scale.md)."""
    inputs.str("ray_address", required=False, label="Ray cluster address",
               description="Empty: label in this process. 'auto' (the cluster `ray start` made), "
               "host:6379 or ray://host:10001: label on that Ray cluster (docs/scale.md)")
    address = ctx.params.get("ray_address")
    if not address:
        return
    if not isinstance(address, str) or not RAY_ADDRESS_RE.match(address.strip()):
        invalid(inputs.get_property("ray_address"),
                f"'auto', host:port or ray://host:port is needed, got {address!r}"[:200])
    w = inputs.int("workers", default=1, label="Ray workers", description="Actors, each holding the models once")
    checked_number(ctx, w, "workers", int, lo=1)
    g = inputs.float("gpus_per_worker", default=0.0, label="GPUs per worker")
    checked_number(ctx, g, "gpus_per_worker", float, lo=0)


def ray_kwargs(params: dict) -> dict:
    """``ewc_fo.label`` arguments for the Ray cluster fields (none: an in-process run)."""
    if not params.get("ray_address"):
        return {}
    return {"ray_address": params["ray_address"],
            "workers": to_number(params.get("workers"), int, "workers", lo=1) or 1,
            "gpus_per_worker": to_number(params.get("gpus_per_worker"), float, "gpus_per_worker", lo=0) or 0.0}


def check_run(ctx, inputs, prefix: str) -> None:
    """Say whether the run exists and would resume, or is done (then Overwrite is needed)."""
    from ewc_fo.fo.runs import record as runs
    rec = runs.get_run(ctx.dataset, prefix)
    if rec is None or ctx.params.get("overwrite"):
        return
    conf = f"{prefix}_confidence"
    try:
        todo = len(ctx.target_view().exists(conf, False).exists(f"{prefix}_error", False))
    except Exception:
        return
    if todo == 0:
        error(inputs, "run_done", f"Run '{prefix}' already labeled these samples",
              "Tick Overwrite to redo it, or choose another prefix.")
        invalid(inputs.get_property("prefix"),
                f"run '{prefix}' already labeled these samples; tick Overwrite or choose another prefix")
    else:
        inputs.view("run_resume", types.Notice(
            label=f"Run '{prefix}' exists: {todo} unlabeled sample(s) will be added with its settings"))


class ComputeEWC(foo.Operator):
    """Explanations, confidence and masks for the target samples (``ewc_fo.label``)."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_ewc", label="EWC: compute explanations and masks", icon="auto_fix_high",
            dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_execution_options(self, ctx):
        return execution_options(ctx, long_work=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        field, prefix = compute_form(ctx, inputs)
        if field and prefix:
            check_run(ctx, inputs, prefix)
        return types.Property(inputs, view=types.View(label="EWC: compute explanations and masks"))

    @one_line_errors
    def execute(self, ctx):
        from ewc_fo.commands._checks import MAX_BATCH_SIZE
        from ewc_fo.engine.pipeline import EWCConfig
        from ewc_fo.fo.runs.label import label
        from ewc_fo.runtime.limits import MAX_INPUT_SIZE, MIN_INPUT_SIZE

        p = ctx.params
        view = ctx.target_view()
        kwargs = dict(
            prefix=p.get("prefix") or "ewc",
            classifier=p.get("classifier") or _default_classifier(ctx),
            segmenter=p.get("segmenter") or "auto",
            sam2_checkpoint=p.get("sam2_checkpoint") or None,
            batch_size=to_number(p.get("batch_size"), int, "batch_size", lo=1, hi=MAX_BATCH_SIZE) or 4,
            overwrite=bool(p.get("overwrite", False)),
            output_dir=confine_write(ctx, p["output_dir"], "output directory") if p.get("output_dir") else None,
        )
        cfg = {}
        if p.get("explainers"):
            cfg["explainers"] = tuple(p["explainers"])
        if p.get("explain_size"):
            cfg["explain_size"] = to_number(p["explain_size"], int, "explain_size", lo=MIN_INPUT_SIZE,
                                            hi=MAX_INPUT_SIZE)
        for key, _, _ in KNOBS:
            v = to_number(p.get(key), float, key, lo=0, hi=1)
            if v is not None:
                cfg[key] = v
        kwargs.update(ray_kwargs(p))
        label_field = p["label_field"]
        with hf_token(ctx):
            summary = label(view, label_field, config=EWCConfig(**cfg), progress=Progress(ctx, "labeling"),
                            progress_bar=False, **kwargs)
        finish(ctx)
        return {
            "prefix": summary.prefix, "labeled": summary.succeeded, "failed": sum(summary.errors.values()),
            "errors": dict(summary.errors), "already_done": summary.skipped_done, "total": summary.total,
            "seconds": round(summary.seconds, 2), "segmenter": summary.segmenter, "views": summary.views,
            "summary": str(summary), "report": md(str(summary)),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("report", label="Run summary", view=types.MarkdownView())
        return types.Property(outputs)

    def __call__(self, samples, label_field: str, *, prefix="ewc", classifier="efficientnet_lite0",
                 explainers=None, segmenter="auto", sam2_checkpoint=None, explain_size=None, batch_size=4,
                 class_competition=None, mask_weight=None, objectness=None, objectness_labels=None,
                 overwrite=False, output_dir=None, ray_address=None, workers=1, gpus_per_worker=0.0,
                 delegate=False):
        params = dict(label_field=label_field, prefix=prefix, classifier=classifier,
                      explainers=list(explainers) if explainers else None, segmenter=segmenter,
                      sam2_checkpoint=sam2_checkpoint, explain_size=explain_size, batch_size=batch_size,
                      class_competition=class_competition, mask_weight=mask_weight, objectness=objectness,
                      objectness_labels=objectness_labels, overwrite=overwrite, output_dir=output_dir,
                      ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker)
        return call(self.uri, samples, params, delegate)


OPERATORS = [ComputeEWC]

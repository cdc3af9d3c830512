"""Fit a classifier on the dataset's image-level labels (``ewc_fo.fit``)."""

from __future__ import annotations

import os

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._common import Progress, call, finish, hf_token, one_line_errors
from .export import confine_write
from .forms import checked_number, invalid, label_field_input, to_number


class FitClassifier(foo.Operator):
    """Fit a classifier on the dataset's image-level labels (``ewc_fo.fit``)."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="fit_classifier", label="EWC: fit classifier on image-level labels", icon="model_training",
            dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_execution_options(self, ctx):
        return foo.ExecutionOptions(allow_immediate_execution=True, allow_delegated_execution=True,
                                    default_choice_to_delegated=True)

    def resolve_input(self, ctx):
        from ewc_fo.runtime.errors import ConfigError

        inputs = types.Object()
        inputs.view_target(ctx, action_description="Fit on")
        field = label_field_input(ctx, inputs)
        default_out = ""
        if field:
            from ewc_fo.fo.runs.plan import default_output_dir

            default_out = os.path.join(os.path.dirname(default_output_dir(ctx.dataset, "x")),
                                       f"classifier_{field}.safetensors")
        prop = inputs.str("out", default=default_out, required=True, label="Checkpoint path",
                          description="Where to write the fitted classifier (.safetensors)")
        out = ctx.params.get("out", default_out)
        if out and not str(out).endswith(".safetensors"):
            invalid(prop, "the checkpoint path must end with .safetensors")
        elif out:
            try:
                confine_write(ctx, out, "checkpoint path")
            except ConfigError as e:
                invalid(prop, str(e))
        prop = inputs.str("backbone", required=False, label="Backbone",
                          description="Leave empty for ewc-fo's default backbone")
        if ctx.params.get("backbone") is not None and not isinstance(ctx.params["backbone"], str):
            invalid(prop, f"a backbone name is needed, got {ctx.params['backbone']!r}")
        size = inputs.int("fit_size", required=False, label="Fit size",
                          description="Square side images are resized to for fitting (empty: ewc-fo's default)")
        checked_number(ctx, size, "fit_size", int, lo=32)
        return types.Property(inputs, view=types.View(label="EWC: fit classifier"))

    @one_line_errors
    def execute(self, ctx):
        view = ctx.target_view()
        field = ctx.params["label_field"]
        out = confine_write(ctx, ctx.params.get("out"), "checkpoint path")
        backbone = ctx.params.get("backbone") or None
        fit_size = to_number(ctx.params.get("fit_size"), int, "fit_size", lo=32)
        from ewc_fo.fo.fit import fit

        kwargs = {"out": out, "progress": Progress(ctx, "fitting")}
        if backbone:
            kwargs["backbone"] = backbone
        if fit_size:
            kwargs["fit_size"] = fit_size
        with hf_token(ctx):
            result = fit(view, field, **kwargs)
        finish(ctx)
        meta = getattr(result, "meta", {}) or {}
        score = meta.get("heldout_score")
        return {"out": out, "classes": list(getattr(result, "class_names", [])),
                "heldout_score": score, "result": f"classifier saved to {out}; held-out score {score}"}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("out", label="Checkpoint")
        outputs.str("result", label="Result")
        outputs.str("error", label="Error")
        return types.Property(outputs)

    def __call__(self, samples, label_field: str, out: str, backbone: str | None = None, fit_size=None,
                 delegate=False):
        return call(self.uri, samples, dict(label_field=label_field, out=out, backbone=backbone,
                                            fit_size=fit_size), delegate)


OPERATORS = [FitClassifier]

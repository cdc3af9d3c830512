"""Score a run's masks against ground-truth masks (``ewc_fo.evaluate``)."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._common import Progress, call, execution_options, finish, one_line_errors
from .forms import error, runs, segmentation_fields


class EvaluateMasks(foo.Operator):
    """Score a run's masks against ground-truth masks (``ewc_fo.evaluate``)."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="evaluate_masks", label="EWC: evaluate masks against ground truth", icon="fact_check",
            dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_execution_options(self, ctx):
        return execution_options(ctx, long_work=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Evaluate")
        segs = segmentation_fields(ctx.dataset)
        have = runs(ctx.dataset)
        preds = [f"{r}_mask" for r in have if f"{r}_mask" in segs]
        gts = [f for f in segs if f not in {f"{r}_mask" for r in have}]
        if not preds or not gts:
            error(inputs, "fields_missing", "Nothing to evaluate",
                  "Needs an ewc-fo run's <prefix>_mask and a ground-truth fo.Segmentation field "
                  f"(found runs: {', '.join(preds) or 'none'}; ground truth: {', '.join(gts) or 'none'}).")
            return types.Property(inputs, view=types.View(label="EWC: evaluate"))
        for name, opts, label in (("pred_field", preds, "Predicted masks"), ("gt_field", gts, "Ground truth")):
            dd = types.DropdownView()
            for f in opts:
                dd.add_choice(f, label=f)
            inputs.enum(name, dd.values(), default=opts[0], required=True, label=label, view=dd)
        return types.Property(inputs, view=types.View(label="EWC: evaluate"))

    @one_line_errors
    def execute(self, ctx):
        from ewc_fo.fo.review.evaluate import evaluate

        view = ctx.target_view()
        pred, gt = ctx.params["pred_field"], ctx.params["gt_field"]
        report = evaluate(view, pred, gt, progress=Progress(ctx, "evaluating"))
        finish(ctx)
        return {"report": report.to_markdown(), "miou": report.to_dict()["miou"], "n_samples": report.n_samples}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("report", label="Report", view=types.MarkdownView())
        return types.Property(outputs)

    def __call__(self, samples, pred_field="ewc_mask", gt_field="ground_truth", delegate=False):
        return call(self.uri, samples, dict(pred_field=pred_field, gt_field=gt_field), delegate)


OPERATORS = [EvaluateMasks]

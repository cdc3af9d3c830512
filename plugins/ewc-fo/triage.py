"""(Re)save a run's triage views so they show in the App's view bar."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._common import call, execution_options, one_line_errors
from .forms import prefix_input


class CreateTriageViews(foo.Operator):
    """(Re)save the run's triage views so they show in the App's view bar."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="create_triage_views", label="EWC: create/refresh triage views", icon="low_priority",
            dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True,
        )

    def resolve_execution_options(self, ctx):
        return execution_options(ctx, long_work=False)

    def resolve_input(self, ctx):
        inputs = types.Object()
        prefix_input(ctx, inputs, must_exist=True)
        inputs.bool("open_view", default=True, label="Open the low-confidence view",
                    description="Show the least trustworthy masks first when done")
        return types.Property(inputs, view=types.View(label="EWC: triage views"))

    @one_line_errors
    def execute(self, ctx):
        from ewc_fo.fo.review.views import create_triage_views

        prefix = ctx.params["prefix"]
        open_view = bool(ctx.params.get("open_view", True))
        names = create_triage_views(ctx.dataset, prefix)
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
            if open_view and names:
                ctx.ops.set_view(name=names[0])
        return {"views": names}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.list("views", types.String(), label="Saved views")
        outputs.str("error", label="Error")
        return types.Property(outputs)

    def __call__(self, dataset, prefix="ewc", delegate=False):
        return call(self.uri, dataset, dict(prefix=prefix, open_view=False), delegate)


OPERATORS = [CreateTriageViews]

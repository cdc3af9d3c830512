"""Operators that send masks for correction to an annotation tool and load the fixes back.

Thin wrappers over ``ewc_fo.fo.review.annotate`` (the code ``ewc-fo annotate`` runs). The server URL
and API key come from the form, else the plugin secrets / FiftyOne's annotation config
(``FIFTYONE_LABELSTUDIO_URL``, ``FIFTYONE_LABELSTUDIO_API_KEY``).
"""

from __future__ import annotations

import re

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._common import one_line_errors
from .forms import checked_number, invalid

SECRETS = ("FIFTYONE_LABELSTUDIO_URL", "FIFTYONE_LABELSTUDIO_API_KEY")
#: an annotation run key becomes a FiftyOne run key and a project name: a plain identifier
ANNO_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def _check_url(ctx, prop) -> None:
    url = ctx.params.get("url")
    if url not in (None, "") and not (isinstance(url, str) and URL_RE.match(url.strip())):
        invalid(prop, f"an http:// or https:// address is needed, got {url!r}"[:200])


def _secret(ctx, key: str) -> str | None:
    try:
        v = ctx.secrets[key]
    except Exception:  # no secrets backend: fall back to FiftyOne's config
        return None
    v = getattr(v, "value", v)
    return v or None


def _server(ctx) -> dict:
    url = ctx.params.get("url") or _secret(ctx, SECRETS[0])
    key = _secret(ctx, SECRETS[1])
    return {"url": url, "api_key": key}


def _runs(dataset) -> list[str]:
    from ewc_fo.fo.review.summary import list_ewc_runs

    return list_ewc_runs(dataset)


def _prefix(ctx, inputs) -> str | None:
    runs = _runs(ctx.dataset)
    if not runs:
        inputs.view("none", types.Error(label="No ewc-fo run on this dataset", description="Run EWC first."))
        return None
    dd = types.DropdownView()
    for r in runs:
        dd.add_choice(r, label=r)
    inputs.enum("prefix", dd.values(), default=runs[0], required=True, label="Run", view=dd)
    return ctx.params.get("prefix", runs[0])


class SendForCorrection(foo.Operator):
    """Send rejected / low-confidence masks (or the current view) to Label Studio."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="send_for_correction", label="EWC: send masks for correction (Label Studio)",
            icon="edit", dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if _prefix(ctx, inputs) is None:
            return types.Property(inputs, view=types.View(label="EWC: send for correction"))
        choice = types.RadioGroup()
        choice.add_choice("candidates", label="Rejected or low-confidence samples",
                          description="tagged ewc:reject, or confidence below the threshold")
        choice.add_choice("view", label="The current view")
        inputs.enum("which", choice.values(), default="candidates", label="Send", view=choice)
        if ctx.params.get("which", "candidates") == "candidates":
            prop = inputs.float("max_confidence", default=0.3, label="Confidence below",
                                description="empty: rejected samples only")
            checked_number(ctx, prop, "max_confidence", float, lo=0, hi=1)
        inputs.bool("include_accepted", default=False, label="Also send accepted masks",
                    description="masks a reviewer accepted (ewc:reviewed) stay out unless ticked")
        prop = inputs.str("anno_key", required=True, default="ewc_fix", label="Annotation run key")
        key = ctx.params.get("anno_key", "ewc_fix")
        if not (isinstance(key, str) and ANNO_KEY_RE.match(key)):
            invalid(prop, "start with a letter or _; letters, digits and _ only")
        _check_url(ctx, inputs.str("url", label="Label Studio URL", description="empty: FIFTYONE_LABELSTUDIO_URL"))
        return types.Property(inputs, view=types.View(label="EWC: send for correction"))

    @one_line_errors
    def execute(self, ctx):
        from ewc_fo.fo.review import annotate as ann
        prefix = ctx.params["prefix"]
        view = ctx.target_view()
        accepted = bool(ctx.params.get("include_accepted"))
        if ctx.params.get("which", "candidates") == "candidates":
            view = ann.correction_candidates(view, prefix, max_confidence=ctx.params.get("max_confidence"),
                                             include_accepted=accepted)
        elif not accepted:
            view = ann.without_accepted(view)
        counts = ann.selection_counts(view)
        n = len(view)
        ann.send_for_correction(view, ctx.params["anno_key"], prefix, **_server(ctx))
        return {"sent": n, "rejected": counts["rejected"], "accepted": counts["accepted"],
                "unreviewed": counts["other"], "anno_key": ctx.params["anno_key"]}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("sent", label="Samples sent")
        outputs.int("rejected", label="of which rejected")
        outputs.int("unreviewed", label="of which not reviewed yet")
        outputs.int("accepted", label="of which accepted")
        outputs.str("anno_key", label="Annotation run (load it when the corrections are done)")
        return types.Property(outputs)


class LoadCorrections(foo.Operator):
    """Load what people submitted into ``<prefix>_mask_corrected`` (export prefers it)."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="load_corrections", label="EWC: load corrected masks", icon="download_done", dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if _prefix(ctx, inputs) is None:
            return types.Property(inputs, view=types.View(label="EWC: load corrections"))
        keys = ctx.dataset.list_annotation_runs()
        if not keys:
            inputs.view("none", types.Error(label="No annotation run", description="Send masks first."))
            return types.Property(inputs, view=types.View(label="EWC: load corrections"))
        dd = types.DropdownView()
        for k in keys:
            dd.add_choice(k, label=k)
        inputs.enum("anno_key", dd.values(), default=keys[-1], required=True, label="Annotation run", view=dd)
        _check_url(ctx, inputs.str("url", label="Label Studio URL", description="empty: the URL it was sent to"))
        inputs.bool("cleanup", default=False, label="Delete the project on the server afterwards")
        return types.Property(inputs, view=types.View(label="EWC: load corrections"))

    @one_line_errors
    def execute(self, ctx):
        from ewc_fo.fo.review import annotate as ann
        done = ann.load_corrections(
            ctx.dataset, ctx.params["anno_key"], ctx.params["prefix"], cleanup=bool(ctx.params.get("cleanup")),
            **_server(ctx),
        )
        ctx.ops.reload_dataset()
        return {"corrected": len(done)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("corrected", label="Corrected masks loaded")
        return types.Property(outputs)


OPERATORS = [SendForCorrection, LoadCorrections]

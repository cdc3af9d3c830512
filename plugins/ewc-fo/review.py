"""The reviewer's loop: why a mask can (not) be trusted, accept or reject it, land on the next.

The panel (grid and sample view) shows the current sample's scores and the fused map over the
photo with the mask's outline; Accept / Reject tag it and move on to the least confident sample
nobody has reviewed yet; the review's progress (counts and a confidence histogram) sits on top.
The operators ``review_accept`` / ``review_reject`` do the same from the keyboard: in the sample
view press the backtick, type "acc" or "rej", Enter.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._common import one_line_errors
from .forms import runs
from .review_data import (
    class_traces,
    histogram_traces,
    markdown,
    next_to_review,
    overlay_png,
    progress_markdown,
    sample_info,
    set_review_tag,
)


def _scope(ctx, prefix: str):
    """The samples the review walks: the App's current view when it has the run, else the dataset."""
    try:
        if f"{prefix}_confidence" in ctx.view.get_field_schema():
            return ctx.view
    except Exception:
        pass
    return ctx.dataset


def review_step(ctx, prefix: str, sample_id: str, verdict: str) -> str | None:
    """Tag ``sample_id`` (accept / reject), then open the next sample to review in the sample
    view (when one is open); returns that sample's id, or None when nothing is left."""
    from ewc_fo.fo.review.views import REJECT_TAG, REVIEWED_TAG

    set_review_tag(ctx.dataset, sample_id, {"accept": REVIEWED_TAG, "reject": REJECT_TAG}[verdict])
    nxt = next_to_review(_scope(ctx, prefix), prefix, exclude=sample_id)
    ctx.ops.reload_samples()
    if nxt is None:
        ctx.ops.notify("Every labeled sample here is reviewed or rejected", variant="success")
    elif ctx.current_sample:
        ctx.ops.open_sample(id=nxt)
    return nxt


class ReviewPanel(foo.Panel):
    """Per-sample review: explainer weights and scores, fused map, mask, accept / reject / next."""

    @property
    def config(self):
        return foo.PanelConfig(name="ewc_review", label="EWC review", icon="rule", surfaces="grid modal",
                               help_markdown="Review ewc-fo masks: accept (ewc:reviewed) or reject "
                                             "(ewc:reject); either moves on to the least confident sample "
                                             "not reviewed yet. Keyboard: backtick, 'accept' / 'reject', Enter.")

    # ---- state
    def _prefix(self, ctx) -> str | None:
        have = runs(ctx.dataset)
        p = ctx.panel.get_state("prefix")
        return p if p in have else (have[0] if have else None)

    def _load(self, ctx, sample_id=None):
        from ewc_fo.fo.review.summary import review_progress

        prefix = self._prefix(ctx)
        ctx.panel.set_state("prefix", prefix)
        if prefix is None:
            return
        scope = _scope(ctx, prefix)
        sid = sample_id or ctx.current_sample or next_to_review(scope, prefix)
        info = sample_info(ctx.dataset, sid, prefix) if sid else None
        ctx.panel.set_state("info", info)
        ctx.panel.set_state("summary", markdown(info, prefix) if info else None)
        ctx.panel.set_state("scores", info["rows"] if info else [])
        ctx.panel.set_state("overlay", overlay_png(ctx.dataset, info, prefix) if info else None)
        ctx.panel.set_data("classes", class_traces(ctx.dataset, info, prefix))
        progress = review_progress(scope, prefix)
        ctx.panel.set_state("progress", progress_markdown(progress))
        ctx.panel.set_data("histogram", histogram_traces(progress))

    # ---- events
    def on_load(self, ctx):
        self._load(ctx)

    def on_change_current_sample(self, ctx):
        self._load(ctx)

    def on_change_view(self, ctx):
        self._load(ctx)

    def on_change_prefix(self, ctx):
        ctx.panel.set_state("prefix", ctx.params.get("value"))
        self._load(ctx)

    def _verdict(self, ctx, verdict):
        prefix = self._prefix(ctx)
        sid = ctx.current_sample or (ctx.panel.get_state("info") or {}).get("id")
        if not sid or prefix is None:
            ctx.ops.notify("Open a sample first", variant="warning")
            return
        nxt = review_step(ctx, prefix, sid, verdict)
        self._load(ctx, nxt or sid)

    def on_accept(self, ctx):
        self._verdict(ctx, "accept")

    def on_reject(self, ctx):
        self._verdict(ctx, "reject")

    def on_next(self, ctx):
        prefix = self._prefix(ctx)
        if prefix is None:
            return
        current = ctx.current_sample or (ctx.panel.get_state("info") or {}).get("id")
        sid = next_to_review(_scope(ctx, prefix), prefix, exclude=current)
        if sid is None:
            ctx.ops.notify("Every labeled sample here is reviewed or rejected", variant="success")
            return
        ctx.ops.open_sample(id=sid)
        self._load(ctx, sid)

    def on_show_maps(self, ctx):
        prefix = self._prefix(ctx)
        if prefix:
            ctx.ops.set_active_fields([f"{prefix}_mask", f"{prefix}_heatmap_fused"])

    # ---- layout
    def render(self, ctx):
        panel = types.Object()
        have = runs(ctx.dataset)
        if not have:
            panel.md("No ewc-fo run on this dataset yet: run **EWC: compute explanations and masks**.",
                     name="empty")
            return types.Property(panel, view=types.GridView(orientation="vertical"))
        dd = types.DropdownView()
        for r in have:
            dd.add_choice(r, label=r)
        panel.enum("prefix", dd.values(), default=self._prefix(ctx), label="Run", view=dd,
                   on_change=self.on_change_prefix)
        if ctx.panel.get_state("progress"):
            panel.md(ctx.panel.get_state("progress"), name="progress")
            panel.plot("histogram", layout={"barmode": "stack", "height": 160, "title": {"text": "confidence"},
                                            "margin": {"l": 30, "r": 10, "t": 30, "b": 30},
                                            "xaxis": {"range": [0, 1]}, "showlegend": True},
                       config={"displayModeBar": False})
        row = types.Object()
        row.btn("accept", label="Accept", icon="check", variant="contained", on_click=self.on_accept)
        row.btn("reject", label="Reject", icon="close", variant="outlined", on_click=self.on_reject)
        row.btn("next", label="Skip to next", icon="skip_next", on_click=self.on_next)
        if not ctx.current_sample:  # the App applies set_active_fields to the grid only; the
            # sample view has the overlay picture below instead
            row.btn("show_maps", label="Show mask + fused map", icon="layers", on_click=self.on_show_maps)
        panel.define_property("actions", row, view=types.HStackView())
        if ctx.panel.get_state("summary"):
            panel.md(ctx.panel.get_state("summary"), name="summary")
            if ctx.panel.get_state("overlay"):
                panel.img("overlay", height="260px", alt_text="fused map over the photo, mask outlined")
            info = ctx.panel.get_state("info") or {}
            n = len(set(info.get("class_confidence") or {}) | set((info.get("mask") or {}).get("coverage_pct") or {}))
            if n and info.get("confidence") is not None:  # each class in its colour (class_traces)
                panel.plot("classes", layout={"height": 70 + 28 * n, "title": {"text": "class confidence"},
                                              "margin": {"l": 90, "r": 10, "t": 30, "b": 25},
                                              "xaxis": {"range": [0, 1]}, "showlegend": False},
                           config={"displayModeBar": False})
            table = types.TableView()
            table.add_column("explainer", label="Explainer")
            for k in ("weight", "concentration", "agreement", "quality"):
                table.add_column(k, label=k)
            panel.list("scores", types.Object(), view=table, label="Explainers (weights sum to 1)")
        else:
            panel.md("Nothing left to review here.", name="hint")
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1))


class _Verdict(foo.Operator):
    """Accept or reject the open sample and go to the next one (the panel's buttons, by keyboard)."""

    verdict = "accept"

    @property
    def config(self):
        word = "Accept" if self.verdict == "accept" else "Reject"
        return foo.OperatorConfig(name=f"review_{self.verdict}", label=f"EWC review: {word} this mask and go on",
                                  icon="check" if self.verdict == "accept" else "close")

    @one_line_errors
    def execute(self, ctx):
        have = runs(ctx.dataset)
        prefix = ctx.params.get("prefix") or (have[0] if have else None)
        sid = ctx.current_sample or (ctx.selected[0] if ctx.selected else None)
        if not sid or prefix is None:
            ctx.ops.notify("Open a sample (or select one) first", variant="warning")
            return {"next": None}
        from ewc_fo.runtime.errors import ConfigError

        if prefix not in have:  # checked before the tag is set
            raise ConfigError(f"no ewc-fo run {prefix!r} on this dataset (runs: {', '.join(have) or 'none'})")
        try:
            found = len(ctx.dataset.select(sid)) == 1
        except Exception:  # not an id at all
            found = False
        if not found:
            raise ConfigError(f"no sample {sid!r} in dataset {ctx.dataset.name!r}")
        return {"sample": sid, "next": review_step(ctx, prefix, sid, self.verdict)}


class ReviewAccept(_Verdict):
    verdict = "accept"


class ReviewReject(_Verdict):
    verdict = "reject"


OPERATORS = [ReviewPanel, ReviewAccept, ReviewReject]

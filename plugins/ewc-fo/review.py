"""The reviewer's panel: why a mask can (not) be trusted, and one click to accept or reject it."""

from __future__ import annotations

import math
from urllib.parse import quote

import fiftyone.operators as foo
import fiftyone.operators.types as types

SCORE_KEYS = ("weight", "concentration", "agreement", "quality")


def _runs(dataset) -> list[str]:
    from ewc_fo.fo.summary import list_ewc_runs

    return list_ewc_runs(dataset)


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 3)


def sample_info(dataset, sample_id: str, prefix: str) -> dict:
    """Everything the panel shows about one sample, JSON-ready."""
    import numpy as np
    from PIL import Image

    s = dataset[sample_id]
    get = lambda f: s[f] if s.has_field(f) else None  # noqa: E731
    scores = get(f"{prefix}_scores") or {}
    rows = [{"explainer": name, **{k: _num(d.get(k)) for k in SCORE_KEYS}}
            for name, d in sorted(scores.items(), key=lambda kv: -(kv[1].get("weight") or 0))]
    info = {
        "id": s.id, "filepath": s.filepath, "tags": list(s.tags), "rows": rows,
        "confidence": _num(get(f"{prefix}_confidence")), "agreement": _num(get(f"{prefix}_agreement")),
        "class_confidence": {k: _num(v) for k, v in (get(f"{prefix}_class_confidence") or {}).items()},
        "error": get(f"{prefix}_error"), "mask": None, "fused_path": None,
    }
    heat = get(f"{prefix}_heatmap_fused")
    if heat is not None and heat.map_path:
        info["fused_path"] = heat.map_path
    seg = get(f"{prefix}_mask")
    if seg is not None and seg.mask_path:
        targets = dataset.mask_targets.get(f"{prefix}_mask", {})
        try:
            m = np.asarray(Image.open(seg.mask_path))
            ids, counts = np.unique(m, return_counts=True)
            cover = {targets.get(int(i), str(int(i))): round(100 * c / m.size, 1) for i, c in zip(ids, counts) if i}
            info["mask"] = {"path": seg.mask_path, "size": list(m.shape[::-1]), "coverage_pct": cover}
        except OSError as e:
            info["mask"] = {"path": seg.mask_path, "error": str(e)}
        inst = get(f"{prefix}_instances")
        info["mask"]["instances"] = len(inst.detections) if inst is not None else 0
    return info


def next_lowest(view, prefix: str, exclude: str | None = None) -> str | None:
    """The least confident sample of ``view`` nobody has reviewed or rejected yet."""
    from ewc_fo.fo.views import REJECT_TAG, REVIEWED_TAG, triage_view

    v = triage_view(view, "low_confidence", prefix).match_tags([REVIEWED_TAG, REJECT_TAG], bool=False)
    if exclude:
        v = v.exclude([exclude])
    ids = v.limit(1).values("id")
    return ids[0] if ids else None


def set_review_tag(dataset, sample_id: str, tag: str) -> None:
    """Accept and reject are exclusive: setting one clears the other."""
    from ewc_fo.fo.views import REJECT_TAG, REVIEWED_TAG

    other = REJECT_TAG if tag == REVIEWED_TAG else REVIEWED_TAG
    one = dataset.select(sample_id)
    one.untag_samples(other)
    one.tag_samples(tag)


def _markdown(info: dict, prefix: str) -> str:
    lines = [f"**{info['filepath'].rsplit('/', 1)[-1]}**  ", f"tags: {', '.join(info['tags']) or '—'}", ""]
    if info["error"]:
        return "\n".join(lines + [f"Not labeled by run `{prefix}`: {info['error']}"])
    if info["confidence"] is None:
        return "\n".join(lines + [f"Not labeled by run `{prefix}` yet."])
    lines += [f"- confidence: **{info['confidence']}**", f"- explainer agreement: {info['agreement']}"]
    for c, v in info["class_confidence"].items():
        lines.append(f"- class `{c}`: confidence {v}")
    m = info.get("mask")
    if m:
        cover = ", ".join(f"{k} {v}%" for k, v in m.get("coverage_pct", {}).items()) or "empty"
        lines.append(f"- mask `{prefix}_mask`: {cover}; {m.get('instances', 0)} instance(s)")
    return "\n".join(lines)


class ReviewPanel(foo.Panel):
    """Per-sample review: explainer weights and scores, fused map, mask, accept / reject / next."""

    @property
    def config(self):
        return foo.PanelConfig(name="ewc_review", label="EWC review", icon="rule", surfaces="grid modal",
                               help_markdown="Review ewc-fo masks: accept (ewc:reviewed) or reject "
                                             "(ewc:reject), then jump to the next lowest-confidence sample.")

    # ---- state
    def _prefix(self, ctx) -> str | None:
        runs = _runs(ctx.dataset)
        p = ctx.panel.get_state("prefix")
        return p if p in runs else (runs[0] if runs else None)

    def _load(self, ctx, sample_id=None):
        prefix = self._prefix(ctx)
        ctx.panel.set_state("prefix", prefix)
        sid = sample_id or ctx.current_sample
        info = sample_info(ctx.dataset, sid, prefix) if (sid and prefix) else None
        ctx.panel.set_state("info", info)
        ctx.panel.set_state("summary", _markdown(info, prefix) if info else None)
        ctx.panel.set_state("scores", info["rows"] if info else [])
        fused = info and info.get("fused_path")
        ctx.panel.set_state("fused_url", f"/media?filepath={quote(fused, safe='')}" if fused else None)

    # ---- events
    def on_load(self, ctx):
        self._load(ctx)

    def on_change_current_sample(self, ctx):
        self._load(ctx)

    def on_change_prefix(self, ctx):
        ctx.panel.set_state("prefix", ctx.params.get("value"))
        self._load(ctx)

    def _tag(self, ctx, tag):
        from ewc_fo.fo.views import REJECT_TAG, REVIEWED_TAG

        sid = ctx.current_sample or (ctx.panel.get_state("info") or {}).get("id")
        if not sid:
            ctx.ops.notify("Open a sample first", variant="warning")
            return
        set_review_tag(ctx.dataset, sid, {"accept": REVIEWED_TAG, "reject": REJECT_TAG}[tag])
        ctx.ops.reload_samples()
        self._load(ctx, sid)

    def on_accept(self, ctx):
        self._tag(ctx, "accept")

    def on_reject(self, ctx):
        self._tag(ctx, "reject")

    def on_next(self, ctx):
        prefix = self._prefix(ctx)
        if prefix is None:
            return
        view = ctx.view if f"{prefix}_confidence" in ctx.view.get_field_schema() else ctx.dataset
        sid = next_lowest(view, prefix, exclude=ctx.current_sample)
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
        runs = _runs(ctx.dataset)
        if not runs:
            panel.md("No ewc-fo run on this dataset yet: run **EWC: compute explanations and masks**.",
                     name="empty")
            return types.Property(panel, view=types.GridView(orientation="vertical"))
        dd = types.DropdownView()
        for r in runs:
            dd.add_choice(r, label=r)
        panel.enum("prefix", dd.values(), default=self._prefix(ctx), label="Run", view=dd,
                   on_change=self.on_change_prefix)
        if ctx.panel.get_state("summary"):
            panel.md(ctx.panel.get_state("summary"), name="summary")
            table = types.TableView()
            table.add_column("explainer", label="Explainer")
            for k in ("weight", "concentration", "agreement", "quality"):
                table.add_column(k, label=k)
            panel.list("scores", types.Object(), view=table, label="Explainers (weights sum to 1)")
            if ctx.panel.get_state("fused_url"):
                panel.img("fused_url", height="180px", alt_text="fused saliency map")
        else:
            panel.md("Open a sample, or jump to the lowest-confidence one.", name="hint")
        row = types.Object()
        row.btn("accept", label="Accept", icon="check", variant="contained", on_click=self.on_accept)
        row.btn("reject", label="Reject", icon="close", variant="outlined", on_click=self.on_reject)
        row.btn("next", label="Next lowest confidence", icon="skip_next", on_click=self.on_next)
        row.btn("show_maps", label="Show mask + fused map", icon="layers", on_click=self.on_show_maps)
        panel.define_property("actions", row, view=types.HStackView())
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1))

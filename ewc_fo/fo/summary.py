"""Plain-text run summaries for the CLI and the demo."""

from __future__ import annotations

from collections import Counter

from .runs import RUN_TYPE
from .views import triage_view


def list_ewc_runs(dataset) -> list[str]:
    out = []
    for key in dataset.list_runs():
        if dataset.get_run_info(key).config.serialize().get("ewc_type") == RUN_TYPE:
            out.append(key)
    return out


def run_summary(view, prefix: str | None = None, worst: int = 5) -> str:
    ds = view._root_dataset if hasattr(view, "_root_dataset") else view
    prefixes = [prefix] if prefix else list_ewc_runs(ds)
    if not prefixes:
        return f"dataset {ds.name!r}: no ewc-fo runs yet (run `ewc-fo label`)"
    lines = []
    for p in prefixes:
        rec = ds.get_run_info(p).config.serialize()
        conf = view.values(f"{p}_confidence")
        done = [c for c in conf if c is not None]
        errors = Counter(k for k in view.values(f"{p}_error_kind") if k)
        seg = rec.get("segmenter", {})
        lines.append(f"run {p!r}: status {rec.get('status')}, segmenter {seg.get('name')} "
                     f"({seg.get('checkpoint', 'no weights')}), label field {rec.get('label_field')!r}")
        lines.append(f"  labeled {len(done)} of {len(view)}; failed {sum(errors.values())}"
                     + (" (" + ", ".join(f"{k}: {n}" for k, n in errors.items()) + ")" if errors else ""))
        if done:
            lines.append(f"  confidence: mean {sum(done) / len(done):.3f}, min {min(done):.3f}, max {max(done):.3f}")
            lines.append("  lowest confidence first:")
            v = triage_view(view, "low_confidence", p).limit(worst)
            for fp, c, a in zip(v.values("filepath"), v.values(f"{p}_confidence"), v.values(f"{p}_agreement")):
                lines.append(f"    {c:.3f}  agreement {a:.3f}  {fp}")
        if rec.get("views"):
            lines.append("  saved triage views: " + ", ".join(rec["views"]))
    return "\n".join(lines)

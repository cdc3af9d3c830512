"""Plain-text run summaries for the CLI and the demo."""

from __future__ import annotations

from collections import Counter

import fiftyone as fo

from ewc_fo.fo.review.app_config import newest_run
from ewc_fo.fo.review.views import REJECT_TAG, REVIEWED_TAG, saved_view_name, triage_view
from ewc_fo.fo.runs.record import RUN_TYPE
from ewc_fo.runtime.errors import ConfigError


def exact_count(samples) -> int:
    """The number of samples, counted: ``len()`` and ``count()`` of a whole dataset are
    MongoDB's estimate from collection metadata, which reads 0 just after a database crash."""
    return samples.aggregate(fo.Count())


def list_ewc_runs(dataset) -> list[str]:
    """The dataset's ewc-fo runs, the one the App shows (the newest) first."""
    out = []
    for key in dataset.list_runs():
        if dataset.get_run_info(key).config.serialize().get("ewc_type") == RUN_TYPE:
            out.append(key)
    newest = newest_run(dataset)
    return sorted(out, key=lambda k: k != newest)


def review_progress(samples, prefix: str = "ewc", bins: int = 10) -> dict:
    """How far the review of run ``prefix`` is on ``samples``: counts, and confidence histograms
    (all labeled samples, and those still to review) on ``bins`` equal bins of [0, 1]."""
    labeled = samples.exists(f"{prefix}_confidence")
    todo = triage_view(samples, "to_review", prefix)
    conf = f"{prefix}_confidence"
    counts, edges, _ = labeled.histogram_values(conf, bins=bins, range=[0.0, 1.0])
    left_counts, _, _ = todo.histogram_values(conf, bins=bins, range=[0.0, 1.0])
    return {
        "labeled": exact_count(labeled), "reviewed": exact_count(labeled.match_tags(REVIEWED_TAG)),
        "rejected": exact_count(labeled.match_tags(REJECT_TAG)), "left": exact_count(todo),
        "edges": [round(float(e), 3) for e in edges], "counts": [int(c) for c in counts],
        "left_counts": [int(c) for c in left_counts], "view": saved_view_name(prefix, "to_review"),
    }


def progress_text(p: dict, width: int = 30) -> list[str]:
    """``review_progress`` as lines of text: the counts and a histogram (# to review, = done)."""
    lines = [f"review: {p['reviewed']} accepted, {p['rejected']} rejected, {p['left']} left "
             f"of {p['labeled']} (saved view {p['view']})", "  confidence    # to review, = done"]
    top = max(p["counts"] or [1]) or 1
    for lo, hi, n, left in zip(p["edges"], p["edges"][1:], p["counts"], p["left_counts"]):
        todo, done = round(width * left / top), round(width * (n - left) / top)
        lines.append(f"  {lo:.1f}-{hi:.1f}  {n:4d} {'#' * todo}{'=' * done}".rstrip())
    return lines


def run_summary(view, prefix: str | None = None, worst: int = 5) -> str:
    ds = view._root_dataset if hasattr(view, "_root_dataset") else view
    have = list_ewc_runs(ds)
    if prefix and prefix not in have:
        raise ConfigError(f"dataset {ds.name!r} has no ewc-fo run {prefix!r} (runs: {', '.join(have) or 'none'})")
    prefixes = [prefix] if prefix else have
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
                     f"({_weights(seg)}), label field {rec.get('label_field')!r}")
        lines.append(f"  labeled {len(done)} of {exact_count(view)}; failed {sum(errors.values())}"
                     + (" (" + ", ".join(f"{k}: {n}" for k, n in errors.items()) + ")" if errors else ""))
        if done:
            lines.append(f"  confidence: mean {sum(done) / len(done):.3f}, min {min(done):.3f}, max {max(done):.3f}")
            lines.append("  lowest confidence first:")
            v = triage_view(view, "low_confidence", p).limit(worst)
            for fp, c, a, per in zip(v.values("filepath"), v.values(f"{p}_confidence"), v.values(f"{p}_agreement"),
                                     v.values(f"{p}_class_confidence")):
                lines.append(f"    {c:.3f}  agreement {a:.3f}  {_weakest(per)}{fp}")
            lines += ["  " + line for line in progress_text(review_progress(view, p))]
        if rec.get("views"):
            lines.append("  saved triage views: " + ", ".join(rec["views"]))
    return "\n".join(lines)


def _weakest(per_class: dict | None) -> str:
    """With several classes, the one that set the image's confidence (its lowest): the class
    a reviewer should look at first."""
    if not per_class or len(per_class) < 2:
        return ""
    name, value = min(per_class.items(), key=lambda kv: (kv[1] is None, kv[1]))
    return f"weakest {name} {value:.3f}  " if value is not None else ""


def _weights(seg: dict) -> str:
    """What the run's segmenter cut with: a SAM2 checkpoint, an ONNX pair (by name), or none."""
    if seg.get("checkpoint"):
        return str(seg["checkpoint"])
    if seg.get("encoder"):
        model = seg.get("model")
        return model if model and model != "custom" else f"{seg['encoder']} + {seg.get('decoder')}"
    return "no weights"

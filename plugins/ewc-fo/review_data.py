"""What the review panel shows and does, without any App: sample info, the overlay picture,
the next sample to review, review tags. Kept apart from the panel so it is testable alone."""

from __future__ import annotations

import base64
import io
import math

SCORE_KEYS = ("weight", "concentration", "agreement", "quality")
OVERLAY_WIDTH = 360


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


def overlay_png(dataset, info: dict, prefix: str, width: int = OVERLAY_WIDTH) -> str | None:
    """The photo with the fused map over it (jet, where it is strong) and the mask's outline in
    each class's App colour, as a ``data:`` URL for the panel's image (no file written)."""
    import cv2
    import numpy as np
    from PIL import Image

    from ewc_fo.fo.review.app_config import hex_rgb, run_class_colors
    from ewc_fo.runtime.images import load_image

    if not info.get("fused_path"):
        return None
    try:
        image = load_image(info["filepath"])
        h, w = image.shape[:2]
        fused = np.asarray(Image.open(info["fused_path"]).convert("L").resize((w, h), Image.BILINEAR))
        mask = None
        if info.get("mask") and info["mask"].get("path"):
            mask = np.asarray(Image.open(info["mask"]["path"]).resize((w, h), Image.NEAREST))
    except OSError:
        return None
    heat = cv2.applyColorMap(fused, cv2.COLORMAP_JET)[..., ::-1]
    alpha = (0.6 * fused.astype(np.float32) / 255.0)[..., None]
    out = (image * (1 - alpha) + heat * alpha).astype(np.uint8)
    if mask is not None and mask.any():
        targets = dataset.mask_targets.get(f"{prefix}_mask", {})
        colors = run_class_colors(dataset, prefix)  # the App's colours for the run's classes
        thick = max(2, round(w / 160))
        for i in np.unique(mask):
            if not i:
                continue
            rgb = hex_rgb(colors.get(targets.get(int(i), str(int(i))), "#808080"))
            contours, _ = cv2.findContours((mask == i).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            out = np.ascontiguousarray(out)
            cv2.drawContours(out, contours, -1, rgb, thick)
    pic = Image.fromarray(out)
    pic.thumbnail((width, width))
    if mask is not None and mask.any():  # the classes named in their colours, as in the grid
        from PIL import ImageDraw, ImageFont

        draw, font = ImageDraw.Draw(pic), ImageFont.load_default(size=14)
        for row, i in enumerate(int(v) for v in np.unique(mask) if v):
            name = targets.get(i, str(i))
            draw.rectangle([4, 4 + 20 * row, 20, 20 + 20 * row], fill=hex_rgb(colors.get(name, "#808080")))
            draw.text((25, 4 + 20 * row), name, fill="white", font=font, stroke_width=2, stroke_fill="black")
    buf = io.BytesIO()
    pic.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def next_to_review(samples, prefix: str, exclude: str | None = None) -> str | None:
    """The least confident sample of ``samples`` nobody has accepted or rejected yet."""
    from ewc_fo.fo.review.views import triage_view

    v = triage_view(samples, "to_review", prefix)
    if exclude:
        v = v.exclude([exclude])
    ids = v.limit(1).values("id")
    return ids[0] if ids else None


def set_review_tag(dataset, sample_id: str, tag: str) -> None:
    """Accept and reject are exclusive: setting one clears the other."""
    from ewc_fo.fo.review.views import REJECT_TAG, REVIEWED_TAG

    other = REJECT_TAG if tag == REVIEWED_TAG else REVIEWED_TAG
    one = dataset.select(sample_id)
    one.untag_samples(other)
    one.tag_samples(tag)


def markdown(info: dict, prefix: str) -> str:
    lines = [f"**{info['filepath'].rsplit('/', 1)[-1]}**  ", f"tags: {', '.join(info['tags']) or '—'}", ""]
    if info["error"]:
        return "\n".join(lines + [f"Not labeled by run `{prefix}`: {info['error']}"])
    if info["confidence"] is None:
        return "\n".join(lines + [f"Not labeled by run `{prefix}` yet."])
    lines += [f"- confidence: **{info['confidence']}**", f"- explainer agreement: {info['agreement']}"]
    m = info.get("mask")
    if m:  # the classes themselves are in the class chart, in their colours (markdown has none)
        empty = "" if m.get("coverage_pct") else " (empty)"
        lines.append(f"- mask `{prefix}_mask`{empty}: {m.get('instances', 0)} instance(s)")
    return "\n".join(lines)


def class_traces(dataset, info: dict | None, prefix: str) -> list[dict]:
    """Plotly bars, one per class of the sample (its confidence; its share of the mask as text),
    each bar and its name in the colour the run's colour scheme gives the class, as in the grid."""
    from ewc_fo.fo.review.app_config import run_class_colors

    if not info or info.get("confidence") is None:
        return []
    conf = info.get("class_confidence") or {}
    cover = (info.get("mask") or {}).get("coverage_pct") or {}
    names = sorted(set(conf) | set(cover), key=lambda n: (-(conf.get(n) or 0), n))
    if not names:
        return []
    colors = run_class_colors(dataset, prefix)
    col = [colors.get(n, "#808080") for n in names]
    return [{
        "type": "bar", "name": "class confidence", "orientation": "h", "showlegend": False,
        "y": [f'<span style="color:{c}"><b>{n}</b></span>' for n, c in zip(names, col)],
        "x": [conf.get(n) or 0 for n in names], "marker": {"color": col},
        "text": [f"{cover[n]}% of the image" if n in cover else "not in the mask" for n in names],
        "textposition": "auto", "hoverinfo": "x+text",
    }]


def progress_markdown(p: dict) -> str:
    done = p["reviewed"] + p["rejected"]
    pct = round(100 * done / p["labeled"]) if p["labeled"] else 0
    return (f"**Review: {done} of {p['labeled']} done ({pct}%)** — {p['reviewed']} accepted, "
            f"{p['rejected']} rejected, **{p['left']} left** (saved view `{p['view']}`)")


def histogram_traces(p: dict) -> list[dict]:
    """Plotly bars: labeled samples per confidence bin, split into done and still to review."""
    centers = [round((a + b) / 2, 3) for a, b in zip(p["edges"], p["edges"][1:])]
    width = (p["edges"][1] - p["edges"][0]) if len(p["edges"]) > 1 else 0.1
    done = [n - left for n, left in zip(p["counts"], p["left_counts"])]
    return [
        {"type": "bar", "name": "to review", "x": centers, "y": p["left_counts"], "width": width,
         "marker": {"color": "#F38400"}},
        {"type": "bar", "name": "done", "x": centers, "y": done, "width": width, "marker": {"color": "#008856"}},
    ]

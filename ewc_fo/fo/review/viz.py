"""A picture of a run, laid out as a person reads it: one row per (image, class).

Each row names the file, the class (written in its colour) and its confidence, then shows the
photo with that class's mask, each explainer's map for that class and the fused map; a header
names the columns and a legend closes the picture. Colours are the run's colour scheme's
(:func:`~ewc_fo.fo.review.app_config.run_class_colors`), the ones the App draws. Used by the demo
and ``ewc-fo summary --png``.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ewc_fo.fo.review.app_config import hex_rgb, run_class_colors
from ewc_fo.runtime.images import load_image

CELL = 200
TEXT_W = 190
GAP = 2
FONT = ImageFont.load_default(size=14)
BIG = ImageFont.load_default(size=18)


def _fit(arr: np.ndarray, h: int) -> Image.Image:
    img = Image.fromarray(arr).convert("RGB")
    return img.resize((max(1, round(img.width * h / img.height)), h))


def _heat(m: np.ndarray) -> np.ndarray:
    return cv2.applyColorMap(m.astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]


def _tint(image: np.ndarray, on: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    out = image.astype(np.float32)
    out[on] = 0.45 * out[on] + 0.55 * np.array(rgb, np.float32)
    return out.astype(np.uint8)


def _row(image, mask, cid, name, rgb, conf, fname, maps, fused) -> Image.Image:
    h = min(CELL, round(CELL * image.shape[0] / image.shape[1]))  # as tall as the photo: no blank band
    h = max(h, 64)
    if mask.shape != image.shape[:2]:
        mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    on = mask == cid
    cells = [_fit(_tint(image, on, rgb), h)] + [_fit(_heat(m), h) for m in maps] + [_fit(_heat(fused), h)]
    row = Image.new("RGB", (TEXT_W + sum(c.width + GAP for c in cells), h), "white")
    d = ImageDraw.Draw(row)
    d.text((4, 4), fname[:24], fill="black", font=FONT)
    d.text((4, 26), name[:18], fill=rgb, font=BIG)
    d.text((4, 52), f"confidence {conf:.2f}" if conf is not None else "confidence —", fill="black", font=FONT)
    x = TEXT_W
    for c in cells:
        row.paste(c, (x, 0))
        x += c.width + GAP
    return row


def _header(names: list[str], widths: list[int]) -> Image.Image:
    bar = Image.new("RGB", (TEXT_W + sum(w + GAP for w in widths), 20), (235, 235, 235))
    d = ImageDraw.Draw(bar)
    d.text((4, 2), "image / class", fill="black", font=FONT)
    x = TEXT_W
    for n, w in zip(names, widths):
        d.text((x + 4, 2), n, fill="black", font=FONT)
        x += w + GAP
    return bar


def _legend(colors: dict[str, str], width: int) -> Image.Image:
    per_line = max(1, width // 170)
    lines = (len(colors) + per_line - 1) // per_line
    leg = Image.new("RGB", (width, 22 * max(lines, 1)), (235, 235, 235))
    d = ImageDraw.Draw(leg)
    for k, (name, color) in enumerate(sorted(colors.items())):
        x, y = 6 + 170 * (k % per_line), 3 + 22 * (k // per_line)
        d.rectangle([x, y, x + 16, y + 16], fill=hex_rgb(color))
        d.text((x + 22, y), name[:18], fill="black", font=FONT)
    return leg


def overview(samples, prefix: str = "ewc", path: str = "overview.png", max_samples: int = 8) -> str:
    """Write the picture of run ``prefix`` (the ``max_samples`` least confident images, one row per
    class of each) to ``path`` and return it ("" when the run labeled none of ``samples``)."""
    from ewc_fo.fo.review.views import triage_view

    ds = samples._root_dataset if hasattr(samples, "_root_dataset") else samples
    targets = {str(v): int(k) for k, v in (ds.mask_targets.get(f"{prefix}_mask") or {}).items()}
    colors = run_class_colors(ds, prefix)
    rows, columns, shown = [], None, {}
    for s in triage_view(samples, "low_confidence", prefix).limit(max_samples):
        image = load_image(s.filepath)
        mask = np.asarray(Image.open(s[f"{prefix}_mask"].mask_path))
        z = np.load(s[f"{prefix}_maps_path"])
        names = [str(n) for n in z["names"]]
        columns = columns or ["photo + mask", *names, "fused"]
        per_class = s[f"{prefix}_class_confidence"] or {}
        for ci, cname in enumerate(str(c) for c in z["classes"]):
            color = colors.get(cname, "#808080")
            shown[cname] = color
            maps = [z["maps"][k][ci] for k in range(len(names))]
            rows.append(_row(image, mask, targets.get(cname, -1), cname, hex_rgb(color),
                             per_class.get(cname, s[f"{prefix}_confidence"]), os.path.basename(s.filepath),
                             maps, z["fused"][ci]))
    if not rows:
        return ""
    width = max(r.width for r in rows)
    parts = [_header(columns, _cell_widths(rows[0], len(columns))), *rows, _legend(shown, width)]
    grid = Image.new("RGB", (width, sum(p.height for p in parts) + GAP * (len(parts) - 1)), (235, 235, 235))
    y = 0
    for p in parts:
        grid.paste(p, (0, y))
        y += p.height + GAP
    grid.save(path)
    return path


def _cell_widths(row: Image.Image, n: int) -> list[int]:
    """The width of each picture cell of ``row`` (they are all as wide: one aspect ratio per row)."""
    w = (row.width - TEXT_W) // n - GAP
    return [w] * n

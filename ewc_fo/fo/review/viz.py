"""A picture of a run: per sample, the photo, the mask, each explainer's map and the fused map.

Used by the demo and ``ewc-fo summary --png`` so one sees what EWC did without opening the App.
Mask classes are drawn in the colours the App uses for them (``app_config.class_colors``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ewc_fo.runtime.images import load_image

CELL = 200


def _cell(arr: np.ndarray, title: str) -> Image.Image:
    img = Image.fromarray(arr).convert("RGB")
    img.thumbnail((CELL, CELL))
    canvas = Image.new("RGB", (CELL, CELL + 14), "white")
    canvas.paste(img, ((CELL - img.width) // 2, 14))
    ImageDraw.Draw(canvas).text((3, 1), title[:32], fill="black")
    return canvas


def _overlay(image: np.ndarray, mask: np.ndarray, targets: dict[int, str] | None = None) -> np.ndarray:
    from ewc_fo.fo.review.app_config import class_colors

    targets = targets or {}
    names = {i: targets.get(i, str(i)) for i in range(1, int(mask.max()) + 1)}
    colors = class_colors(list(names.values()))
    palette = np.zeros((int(mask.max()) + 1, 3))
    for i, n in names.items():
        palette[i] = [int(colors[n][k:k + 2], 16) for k in (1, 3, 5)]
    color = palette[mask]
    return np.where(mask[..., None] > 0, (0.45 * image + 0.55 * color), image).astype(np.uint8)


def overview(samples, prefix: str = "ewc", path: str = "overview.png", max_samples: int = 8) -> str:
    """Write a grid PNG (one row per sample, lowest confidence first) and return its path
    ("" when the run labeled none of ``samples``)."""
    from ewc_fo.fo.review.views import triage_view

    rows = []
    ds = samples._root_dataset if hasattr(samples, "_root_dataset") else samples
    targets = ds.mask_targets.get(f"{prefix}_mask", {})
    for s in triage_view(samples, "low_confidence", prefix).limit(max_samples):
        image = load_image(s.filepath)
        mask = np.asarray(Image.open(s[f"{prefix}_mask"].mask_path))
        z = np.load(s[f"{prefix}_maps_path"])
        cells = [_cell(image, f"conf {s[f'{prefix}_confidence']:.2f}"),
                 _cell(_overlay(image, mask, targets), "mask")]
        for k, name in enumerate(z["names"]):
            cells.append(_cell(z["maps"][k].max(0), str(name)))
        cells.append(_cell(z["fused"].max(0), "fused"))
        row = Image.new("RGB", (CELL * len(cells), CELL + 14), "white")
        for i, c in enumerate(cells):
            row.paste(c, (i * CELL, 0))
        rows.append(row)
    if not rows:
        return ""
    grid = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        grid.paste(r, (0, y))
        y += r.height
    grid.save(path)
    return path

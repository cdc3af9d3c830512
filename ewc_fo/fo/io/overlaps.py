"""Making an image's instance masks disjoint for export.

Each class of an image is cut separately, so a run's instances can overlap (mostly between
classes; see docs/export.md for measured amounts); many COCO consumers assume one instance
per pixel, so exports resolve the overlaps unless asked not to.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def exclusive_instances(
    objs: list[tuple[int, np.ndarray, float | None]], label_map: np.ndarray | None, stats: Counter
) -> list[tuple[int, np.ndarray, float | None]]:
    """Make instances of one image disjoint: where they overlap, a pixel goes to an instance
    of the class the run's label map gives it, else to the most confident instance. Instances
    left with no pixel are dropped (counted in ``stats``)."""
    if len(objs) < 2:
        return objs
    order = sorted(range(len(objs)), key=lambda i: -1.0 if objs[i][2] is None else -float(objs[i][2]))
    claimed = np.zeros(objs[0][1].shape, bool)
    own = [np.zeros_like(claimed) for _ in objs]
    passes = ([True] if label_map is not None else []) + [False]
    for agree_only in passes:
        for i in order:
            cid, m, _ = objs[i]
            take = m & ~claimed
            if agree_only:
                take &= label_map == cid
            own[i] |= take
            claimed |= take
    out = []
    for (cid, _, conf), m in zip(objs, own):
        if m.any():
            out.append((cid, m, conf))
        else:
            stats["instance_covered_by_others"] += 1
    return out

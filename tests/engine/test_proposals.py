"""SAM proposals labelled by the maps (engine/proposals.py): pure array steps."""

from __future__ import annotations

import numpy as np

from ewc_fo.engine.proposals import grid_points, label_proposals


def _box(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_grid_points_only_where_there_is_evidence_hottest_first():
    fused = np.zeros((2, 40, 40), np.float32)
    fused[0, :20, :20] = 1.0
    fused[1, 20:, 20:] = 0.5
    pts = grid_points(fused, [1.0, 1.0], grid=4, level=0.3)
    assert len(pts) == 8  # 4 cells per warm quadrant, none in the cold ones
    assert (pts[:4] < 20).all() and (pts[4:] >= 20).all()  # class 0 (hotter) first
    # a weak class's evidence is scaled by its probability: below the level, no points there
    assert len(grid_points(fused, [1.0, 0.2], grid=4, level=0.3)) == 4


def test_each_proposal_goes_whole_to_the_class_it_holds_or_to_background():
    shape = (40, 40)
    fused = np.zeros((2, *shape), np.float32)
    fused[0, 5:15, 5:15] = 1.0  # class 0's evidence covers part of proposal A
    fused[1, 25:35, 25:35] = 1.0
    a, b, cold = _box(shape, 2, 18, 2, 18), _box(shape, 22, 38, 22, 38), _box(shape, 0, 10, 30, 40)
    base = np.full(shape, 7, np.uint8)  # what no proposal covers keeps the masks' own label
    lab = label_proposals(fused, [(a, 0.9), (b, 0.9), (cold, 0.9)], 0.3, shape, [1.0, 1.0], base)
    assert (lab[a] == 1).all() and (lab[b] == 2).all()  # whole object, past the map's edge
    assert (lab[cold & ~b] == 0).all()  # no evidence inside: background
    assert lab[20, 0] == 7
    # a smaller proposal inside a larger one keeps its own label
    inner = _box(shape, 25, 35, 25, 35)
    fused[0, 22:38, 22:38] = 0.6
    fused[1] = 0
    fused[1, 25:35, 25:35] = 1.0
    lab = label_proposals(fused, [(inner, 0.9), (b, 0.9)], 0.3, shape, [1.0, 1.0], base)
    assert (lab[inner] == 2).all() and (lab[b & ~inner] == 1).all()



def test_objectness_is_the_second_vote_of_a_proposal():
    """With objectness, a proposal's vote is the mean of its evidence and its objectness: warm
    evidence on a cut no detector calls an object (a wall) is background, and a cut the
    detector is sure of passes with weaker evidence (method.md v0.7)."""
    shape = (40, 40)
    fused = np.zeros((1, *shape), np.float32)
    wall, cat = _box(shape, 0, 20, 0, 40), _box(shape, 22, 38, 5, 20)
    fused[0][wall] = 0.4  # evidence alone would give the wall the class (0.4 >= 0.3)
    fused[0][cat] = 0.25  # ... and not the cat (0.25 < 0.3)
    obj = np.zeros(shape, np.float32)
    obj[cat] = 0.9
    base = np.zeros(shape, np.uint8)
    alone = label_proposals(fused, [(wall, 0.9), (cat, 0.9)], 0.3, shape, [1.0], base)
    assert (alone[wall] == 1).all() and (alone[cat] == 0).all()
    both = label_proposals(fused, [(wall, 0.9), (cat, 0.9)], 0.3, shape, [1.0], base, objectness=obj)
    assert (both[wall] == 0).all() and (both[cat] == 1).all()

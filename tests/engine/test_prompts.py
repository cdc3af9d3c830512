"""Dual-threshold prompts on maps whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from ewc_fo.engine.prompts import PromptConfig, make_prompt
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.testing import blob_map

SHAPE = (96, 128)
CFG = PromptConfig()


def _two_blobs() -> np.ndarray:
    return np.maximum(blob_map(SHAPE, (30, 40), 7), 0.8 * blob_map(SHAPE, (95, 50), 7))


def _inside(box: np.ndarray, xy: tuple[float, float]) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1


def test_two_separated_blobs_give_two_boxes():
    m = _two_blobs()
    p = make_prompt(m, CFG)
    assert not p.empty and len(p.regions) == 2
    # ranked by mass: the stronger blob first
    assert _inside(p.regions[0].box, (30, 40)) and _inside(p.regions[1].box, (95, 50))
    assert not _inside(p.regions[0].box, (95, 50))
    for r in p.regions:
        x0, y0, x1, y1 = r.box
        # the box holds the blob's part above box_threshold, not much more
        assert 10 < x1 - x0 < 40 and 10 < y1 - y0 < 40
        assert 1 <= len(r.points) <= CFG.points_per_region
        xs, ys = r.points[:, 0].astype(int), r.points[:, 1].astype(int)
        assert np.all(m[ys, xs] >= CFG.fg_threshold * m.max())  # positives in the hot core
        assert all(_inside(r.box, pt) for pt in r.points)


def test_negative_points_in_cold_area():
    m = _two_blobs()
    p = make_prompt(m, CFG)
    assert len(p.negatives) == CFG.negative_points
    xs, ys = p.negatives[:, 0].astype(int), p.negatives[:, 1].astype(int)
    assert np.all(m[ys, xs] <= CFG.bg_threshold)
    assert not any(_inside(r.box, pt) for r in p.regions for pt in p.negatives)


def test_positive_points_are_spread():
    m = np.zeros(SHAPE, np.float32)
    m[20:70, 20:100] = 1.0  # a flat plateau: farthest-point sampling spreads the points
    p = make_prompt(m, PromptConfig(points_per_region=3))
    pts = p.regions[0].points
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    assert len(pts) == 3 and d[np.triu_indices(3, 1)].min() > 20


def test_all_zero_map_is_an_empty_prompt():
    p = make_prompt(np.zeros(SHAPE, np.float32), CFG)
    assert p.empty and p.regions == [] and len(p.negatives) == 0
    assert make_prompt(np.full(SHAPE, np.nan, np.float32), CFG).empty  # NaN is no evidence


def test_thresholds_are_relative_to_the_maximum():
    m = _two_blobs()
    a, b = make_prompt(m, CFG), make_prompt(0.05 * m, CFG)
    assert len(a.regions) == len(b.regions)
    for ra, rb in zip(a.regions, b.regions):
        np.testing.assert_array_equal(ra.box, rb.box)


def test_small_regions_are_dropped_whatever_their_position():
    m = blob_map(SHAPE, (90, 60), 10)
    m[3:6, 3:6] = 1.0  # a 9-pixel speck, first in raster order
    p = make_prompt(m, CFG)
    assert len(p.regions) == 1 and _inside(p.regions[0].box, (90, 60))
    only = np.zeros(SHAPE, np.float32)
    only[3:6, 3:6] = 1.0  # ... but a lone small region is still a cue
    assert len(make_prompt(only, CFG).regions) == 1


def test_max_regions():
    m = np.zeros(SHAPE, np.float32)
    for i in range(6):
        m = np.maximum(m, blob_map(SHAPE, (12 + 20 * i, 48), 4))
    assert len(make_prompt(m, PromptConfig(max_regions=4)).regions) == 4
    assert len(make_prompt(m, PromptConfig(max_regions=1)).regions) == 1


@pytest.mark.parametrize("kw", [
    {"fg_threshold": 0.2, "box_threshold": 0.5},  # fg below box
    {"bg_threshold": 0.4, "box_threshold": 0.3},  # bg above box
    {"bg_threshold": 0.3, "box_threshold": 0.3},  # bg == box
    {"fg_threshold": 1.5},
    {"bg_threshold": -0.1},
    {"points_per_region": 0},
    {"min_region": 1.0},
])
def test_threshold_validation(kw):
    with pytest.raises(ConfigError):
        PromptConfig(**kw)


def test_top_quantile_judges_a_peaky_map_by_more_than_its_hottest_pixel():
    """One spike over a broad warm blob: against the maximum only the spike is foreground;
    against the 99th percentile the blob's core is too (LayerCAM's failure as a prompt)."""
    yy, xx = np.mgrid[:80, :100]
    m = 0.3 * np.exp(-((yy - 40) ** 2 + (xx - 50) ** 2) / 400.0)
    m[40, 50] = 1.0
    by_max = make_prompt(m.astype(np.float32), PromptConfig())
    by_q = make_prompt(m.astype(np.float32), PromptConfig(top_quantile=0.99))

    def area(p):
        return sum(float((r.box[2] - r.box[0] + 1) * (r.box[3] - r.box[1] + 1)) for r in p.regions)

    assert area(by_q) > 10 * max(area(by_max), 1.0)
    with pytest.raises(ConfigError, match="top_quantile"):
        PromptConfig(top_quantile=0.2)

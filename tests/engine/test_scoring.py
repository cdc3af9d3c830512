"""Scores and fusion on synthetic maps whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from ewc_fo.engine.scoring import (
    ScoreConfig,
    agreement,
    combine,
    concentration,
    fuse,
    pairwise_agreement,
)
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.testing import blob_map

SHAPE = (64, 64)


def _delta() -> np.ndarray:
    m = np.zeros(SHAPE, np.float32)
    m[31, 31] = 1.0  # one grid cell: the scores use a 64x64 grid
    return m


def test_concentration_orders_delta_blob_flat():
    maps = np.stack([_delta(), blob_map(SHAPE, (32, 32), 6), np.ones(SHAPE, np.float32)])
    c = concentration(maps)
    assert c[0] > c[1] > c[2]
    assert c[2] == pytest.approx(0.0, abs=1e-9)  # flat: maximal entropy
    assert c[0] == pytest.approx(1.0)  # all mass on one cell: zero entropy
    assert np.all((c >= 0) & (c <= 1))


def test_concentration_is_resolution_independent_and_zero_for_empty():
    small = blob_map((48, 48), (24, 24), 6)
    large = blob_map((480, 480), (240, 240), 60)
    c = concentration(np.stack([small]))[0]
    assert concentration(np.stack([large]))[0] == pytest.approx(c, abs=0.02)
    assert concentration(np.zeros((1, *SHAPE), np.float32))[0] == 0.0


def test_agreement_identical_anticorrelated_and_single():
    b = blob_map(SHAPE, (20, 20), 8)
    assert agreement(np.stack([b, b, b])) == pytest.approx(np.ones(3))
    anti = agreement(np.stack([b, 1 - b]))
    assert anti == pytest.approx(np.zeros(2))  # correlation -1, clipped at 0
    assert agreement(np.stack([b])) == pytest.approx([1.0])  # nothing to agree with: neutral
    assert pairwise_agreement(np.stack([b])) == 1.0


def test_agreement_singles_out_the_odd_map():
    a, far = blob_map(SHAPE, (16, 16), 6), blob_map(SHAPE, (48, 48), 6)
    ag = agreement(np.stack([a, a, far]))
    assert ag[0] == pytest.approx(ag[1]) and ag[0] > 0.3
    assert ag[2] < 0.05
    assert pairwise_agreement(np.stack([a, a])) == pytest.approx(1.0)
    assert pairwise_agreement(np.stack([a, far])) < 0.05


def test_combine_softmax_weights_and_temperature():
    conc, agree, qual = np.array([0.9, 0.5, 0.1]), np.array([1.0, 0.5, 0.0]), np.array([0.8, 0.5, 0.2])
    equal = ScoreConfig(w_concentration=1, w_agreement=1, w_quality=1, temperature=0.2)
    s, w = combine(conc, agree, qual, equal)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(np.diff(w) < 0)  # higher score, higher weight
    np.testing.assert_allclose(s, conc + agree + qual)
    _, hot = combine(conc, agree, qual, ScoreConfig(temperature=0.01))
    _, cold = combine(conc, agree, qual, ScoreConfig(temperature=1000.0))
    assert hot[0] > 0.999  # low temperature: the best explainer takes it all
    np.testing.assert_allclose(cold, np.full(3, 1 / 3), atol=1e-3)  # high: plain mean
    s_noq, _ = combine(conc, agree, None, equal)
    np.testing.assert_allclose(s_noq, conc + agree)  # quality=None drops the term
    s_w, _ = combine(conc, agree, qual, ScoreConfig(w_concentration=0, w_agreement=2, w_quality=0))
    np.testing.assert_allclose(s_w, 2 * agree)


def test_combine_equal_scores_give_uniform_weights():
    _, w = combine(np.full(4, 0.3), np.full(4, 0.3), None, ScoreConfig(temperature=0.05))
    np.testing.assert_allclose(w, np.full(4, 0.25))


def test_fuse_identical_maps_and_empty():
    b = blob_map(SHAPE, (10, 40), 5)
    f = fuse(np.stack([b, b, b]), np.array([0.2, 0.3, 0.5]))
    np.testing.assert_allclose(f, b / b.max(), atol=1e-6)
    assert f.max() == pytest.approx(1.0)
    z = fuse(np.zeros((2, *SHAPE), np.float32), np.array([0.5, 0.5]))
    assert not z.any()


def test_fuse_follows_the_weights():
    a, b = blob_map(SHAPE, (16, 16), 5), blob_map(SHAPE, (48, 48), 5)
    f = fuse(np.stack([a, b]), np.array([0.9, 0.1]))
    assert f[16, 16] == pytest.approx(1.0, abs=1e-3)
    assert f[48, 48] == pytest.approx(0.1 / 0.9, abs=1e-3)


@pytest.mark.parametrize("kw", [{"temperature": 0}, {"temperature": -1}, {"w_quality": -0.1}])
def test_score_config_validation(kw):
    with pytest.raises(ConfigError):
        ScoreConfig(**kw)

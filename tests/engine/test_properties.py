"""Properties of scores, fusion, prompts, competition and merge on random maps (hypothesis):
no NaN, weights that sum to 1, prompts and labels inside the image, determinism."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ewc_fo.engine.maps import compete, merge
from ewc_fo.engine.prompts import PromptConfig, make_prompt
from ewc_fo.engine.scoring import (
    ScoreConfig,
    agreement,
    combine,
    concentration,
    fuse,
    mask_consistency,
    pairwise_agreement,
)

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)


@st.composite
def map_stacks(draw, max_k: int = 5):
    """(K, H, W) float32 maps in [0, 1] of assorted kinds: noise, blobs, spikes, flat, zero."""
    k = draw(st.integers(1, max_k))
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = []
    for _ in range(k):
        kind = draw(st.sampled_from(["noise", "blob", "spike", "flat", "zero", "tiny"]))
        if kind == "noise":
            m = rng.random((h, w))
        elif kind == "blob":
            yy, xx = np.mgrid[:h, :w]
            cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.5, max(h, w))
            m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        elif kind == "spike":
            m = np.zeros((h, w))
            m[rng.integers(h), rng.integers(w)] = 1.0
        elif kind == "flat":
            m = np.full((h, w), rng.uniform(0, 1))
        elif kind == "tiny":
            m = rng.random((h, w)) * 1e-9
        else:
            m = np.zeros((h, w))
        out.append(m)
    return np.stack(out).astype(np.float32)


@SETTINGS
@given(maps=map_stacks(), wq=st.floats(0, 5), temp=st.floats(1e-3, 10), use_q=st.booleans(),
       qseed=st.integers(0, 1000))
def test_scores_and_weights(maps, wq, temp, use_q, qseed):
    conc, agree = concentration(maps), agreement(maps)
    for v in (conc, agree):
        assert v.shape == (len(maps),) and np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= 1 + 1e-9))
    pa = pairwise_agreement(maps)
    assert np.isfinite(pa) and 0 <= pa <= 1
    q = np.random.default_rng(qseed).random(len(maps)) if use_q else None
    s, w = combine(conc, agree, q, ScoreConfig(w_quality=wq, temperature=temp))
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(w)) and np.all(w >= 0)
    assert abs(w.sum() - 1) < 1e-9
    s2, w2 = combine(conc, agree, q, ScoreConfig(w_quality=wq, temperature=temp))
    np.testing.assert_array_equal(w, w2)  # deterministic


@SETTINGS
@given(maps=map_stacks(), wseed=st.integers(0, 1000))
def test_fuse_is_a_normalised_map(maps, wseed):
    w = np.random.default_rng(wseed).random(len(maps))
    w = w / w.sum()
    f = fuse(maps, w)
    assert f.shape == maps.shape[1:] and np.all(np.isfinite(f))
    assert f.min() >= 0 and (f.max() == 0 or abs(f.max() - 1) < 1e-6)
    np.testing.assert_array_equal(f, fuse(maps, w))


@SETTINGS
@given(maps=map_stacks(max_k=1), fg=st.floats(0.3, 1), box=st.floats(0.05, 0.3), bg=st.floats(0, 0.05),
       pts=st.integers(1, 5), negs=st.integers(0, 6), regions=st.integers(1, 4))
def test_prompts_stay_inside_the_image(maps, fg, box, bg, pts, negs, regions):
    m = maps[0]
    h, w = m.shape
    cfg = PromptConfig(fg_threshold=fg, box_threshold=min(box, fg), bg_threshold=min(bg, box * 0.99),
                       points_per_region=pts, negative_points=negs, max_regions=regions)
    p = make_prompt(m, cfg)
    assert p.empty == (float(m.max()) <= 1e-6)
    assert len(p.regions) <= regions and len(p.negatives) <= negs
    for r in p.regions:
        x0, y0, x1, y1 = r.box
        assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1
        assert 1 <= len(r.points) <= pts
        assert np.all((r.points[:, 0] >= x0) & (r.points[:, 0] <= x1))
        assert np.all((r.points[:, 1] >= y0) & (r.points[:, 1] <= y1))
    if len(p.negatives):
        assert np.all((p.negatives >= 0) & (p.negatives < [w, h]))
    q = make_prompt(m.copy(), cfg)  # deterministic
    assert len(q.regions) == len(p.regions)
    for a, b in zip(p.regions, q.regions):
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(p.negatives, q.negatives)
    mask = m >= 0.5 * float(m.max()) if m.max() > 0 else np.zeros_like(m, bool)
    assert 0 <= mask_consistency(m, mask) <= 1


@SETTINGS
@given(maps=map_stacks(), amount=st.floats(0, 1), sseed=st.integers(0, 1000))
def test_competition_keeps_maps_in_range(maps, amount, sseed):
    st_ = np.random.default_rng(sseed).random(len(maps)).astype(np.float32)
    out = compete(maps, st_, amount)
    assert out.shape == maps.shape and np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1


def _merge_reference(fused, masks, shape, strengths):
    """The former all-classes-at-once merge (np.argmax over a (C, H, W) stack)."""
    import cv2

    H, W = shape
    ev = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) if f.shape != (H, W) else f
                   for f in fused])
    if strengths is not None:
        s = np.asarray(strengths, np.float32)
        ev = ev * (s / max(float(s.max()), 1e-6))[:, None, None]
    ev = np.where(np.stack(masks), ev + 1e-6, -1.0)
    return np.where(ev.max(0) > -1.0, ev.argmax(0) + 1, 0)


@SETTINGS
@given(maps=map_stacks(), H=st.integers(1, 40), W=st.integers(1, 40), mseed=st.integers(0, 1000),
       strengths=st.booleans())
def test_merge_labels_only_covered_pixels_like_the_reference(maps, H, W, mseed, strengths):
    rng = np.random.default_rng(mseed)
    C = len(maps)
    masks = [rng.random((H, W)) < rng.uniform(0, 1) for _ in range(C)]
    st_ = rng.random(C).astype(np.float32) if strengths else None
    lm = merge(maps, masks, (H, W), strengths=st_)
    assert lm.shape == (H, W) and lm.min() >= 0 and lm.max() <= C
    covered = np.any(np.stack(masks), 0)
    np.testing.assert_array_equal(lm > 0, covered)
    for c in range(C):
        assert np.all(masks[c][lm == c + 1])
    np.testing.assert_array_equal(lm, _merge_reference(maps, masks, (H, W), st_))

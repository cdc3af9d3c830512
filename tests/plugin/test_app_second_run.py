"""Issue 22 item 3 in the real App: after a second run with another prefix the grid draws only the
newest run's mask on a tile (from screenshot pixels) and the review panel opens on the newest run.

Its own dataset and App server (tests/plugin/_browser.py): the server hands a page whatever sample
view another test left open on a dataset it served, which covers the grid.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from ..fo._data import make_dataset
from ._browser import (
    artifacts_dir,
    browser_page,
    dismiss_promo,
    drawn_color,
    field_checkbox,
    require_browser,
    scheme_colors,
    serve,
    tile_pixels,
)
from .conftest import FAST, URI

sync_api = require_browser()
DATASET = "plugin-app-second-run"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, plugin_env):
    """A two-photo dataset labeled twice (prefixes ``ewc`` then ``again``), served by its own App."""
    import fiftyone.operators as foo

    ds = make_dataset(str(tmp_path_factory.mktemp("second_run_imgs")), DATASET, n=2)
    ds.persistent = True  # served by another process
    compute = foo.get_operator(f"{URI}/compute_ewc")
    try:
        compute(ds, "labels", **FAST)
        compute(ds, "labels", prefix="again", **FAST)
        ds.reload()
        with serve(plugin_env, os.path.join(artifacts_dir(), "app_server_second_run.log")) as url:
            yield ds, url
    finally:
        ds.delete()


def test_second_run_shows_one_mask_per_tile(two_runs):
    """From the pixels of a tile: the mask the App shows is one blend of the class colour
    (switching the newest run's mask off removes it), and it is not what both runs' masks on the
    same tile look like (the same mask twice in the same colour blends stronger). Then the review
    panel, opened on a sample, is on the newest run."""
    ds, url = two_runs
    active = ds.app_config.active_fields.paths
    assert "again_mask" in active and "ewc_mask" not in active
    colors = scheme_colors(ds, "again_mask")
    assert colors == scheme_colors(ds, "ewc_mask")  # one colour per class, whichever run drew it
    art = artifacts_dir()
    shot = lambda page, name: page.screenshot(path=os.path.join(art, name))  # noqa: E731
    with browser_page(sync_api) as (page, errors):
        page.goto(f"{url}/datasets/{DATASET}", wait_until="domcontentloaded")
        page.wait_for_selector("[data-cy=looker]", timeout=90_000)
        page.wait_for_timeout(3000)
        dismiss_promo(page)
        page.wait_for_selector("[data-cy=sidebar-field-container-again_mask]", timeout=30_000)
        assert "id=" not in page.url and not page.locator("[data-cy=modal]").count()  # the grid, no sample view
        assert field_checkbox(page, "again_mask").is_checked()
        assert not field_checkbox(page, "ewc_mask").is_checked()
        page.wait_for_timeout(1500)
        shot(page, "11_second_run.png")
        shown = tile_pixels(page, 0)
        field_checkbox(page, "again_mask").click()  # no mask at all
        page.wait_for_timeout(2500)
        bare = tile_pixels(page, 0)
        # both runs' masks, switched on one at a time (two clicks at once can leave the tile
        # showing the App's error icon): what the App must not show by default
        field_checkbox(page, "ewc_mask").click()
        page.wait_for_timeout(2500)
        field_checkbox(page, "again_mask").click()
        page.wait_for_timeout(2500)
        both = tile_pixels(page, 0)
        shot(page, "12_both_masks_by_hand.png")
        field_checkbox(page, "ewc_mask").click()
        page.wait_for_timeout(2500)
        assert np.abs(tile_pixels(page, 0) - shown).mean() < 3  # back to what the App showed
        best, alpha, frac = drawn_color(bare, shown, colors)
        assert frac > 0.02, f"the shown mask changed only {frac:.1%} of the pixels"
        assert 0.2 < alpha <= 1.05, (best, alpha)
        best2, alpha2, frac2 = drawn_color(bare, both, colors)
        assert best2 == best and alpha2 > alpha + 0.08, (alpha, alpha2)  # two blends, stronger
        assert abs(frac2 - frac) < 0.05, (frac, frac2)  # the same mask twice, not two masks side by side

        # the review panel of a sample opens on the newest run
        page.locator("[data-cy=looker]").first.click()
        page.wait_for_selector("text=EWC review", timeout=30_000)
        page.get_by_text("EWC review").first.click()
        page.wait_for_selector("text=Review: 0 of 2 done", timeout=30_000)
        page.wait_for_timeout(1500)
        shot(page, "13_review_panel_second_run.png")
        run = page.get_by_role("combobox").filter(has_text="again")
        assert run.count() == 1 and not page.get_by_role("combobox").filter(has_text="ewc").count(), \
            [c.inner_text() for c in page.get_by_role("combobox").all()]
        assert not errors, errors

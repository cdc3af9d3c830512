"""The plugin in the real App: headless Chromium runs the compute operator from the operator browser,
then walks the review loop (low-confidence view, masks in class colours, Accept -> next sample).

What the browser tests share (Chromium, an App server per module, pixels) is in ``_browser.py``;
the second run's test (one mask per tile) is ``test_app_second_run.py``, on a server of its own.
"""

from __future__ import annotations

import os
import re

import pytest

from ..fo._data import make_dataset
from ._browser import (
    artifacts_dir,
    browser_page,
    dismiss_promo,
    drawn_color,
    field_checkbox,
    hex_rgb,
    require_browser,
    scheme_colors,
    serve,
    tile_pixels,
    wait_until,
)

sync_api = require_browser()
DATASET = "plugin-app-browser"


@pytest.fixture(scope="module")
def artifacts():
    return artifacts_dir()


@pytest.fixture(scope="module")
def app(tmp_path_factory, plugin_env, artifacts):
    """A FiftyOne App server on loopback, on a two-photo dataset, with this repo's plugins."""
    ds = make_dataset(str(tmp_path_factory.mktemp("app_imgs")), DATASET, n=2)
    ds.persistent = True  # served by another process
    try:
        with serve(plugin_env, os.path.join(artifacts, "app_server.log")) as url:
            yield ds, url
    finally:
        ds.delete()


def test_compute_operator_in_browser(app, artifacts):
    ds, url = app
    shot = lambda page, name: page.screenshot(path=os.path.join(artifacts, name), full_page=True)  # noqa: E731
    with browser_page(sync_api) as (page, errors):
        page.goto(f"{url}/datasets/{DATASET}", wait_until="domcontentloaded")
        page.wait_for_selector("text=labels", timeout=90_000)
        page.wait_for_timeout(1500)
        shot(page, "01_dataset.png")
        if page.get_by_role("button", name="Dismiss").count():  # the App's Enterprise promo dialog
            page.get_by_role("button", name="Dismiss").first.click()
            page.wait_for_timeout(500)

        # the operator browser lists the plugin's operators
        page.keyboard.press("`")
        search = page.get_by_placeholder("Search operations by name...")
        search.wait_for(timeout=30_000)
        for label in ("EWC: compute explanations and masks", "EWC: create/refresh triage views",
                      "EWC: evaluate masks against ground truth", "EWC: export masks (COCO / VOC)",
                      "EWC: fit classifier on image-level labels"):
            assert page.get_by_text(label).count(), label
        shot(page, "02_operator_browser.png")
        search.fill("compute explanations")
        page.keyboard.press("Enter")

        # the form: defaults filled in; keep the run small (2 explainers, 160 px, GrabCut)
        page.wait_for_selector("text=Label field", timeout=90_000)
        page.wait_for_timeout(1000)
        for name in ("gradcampp", "xgradcam", "layercam"):
            page.locator(f".MuiChip-root:has-text('{name}') .MuiChip-deleteIcon").first.click()
            page.wait_for_timeout(300)
        page.locator("input[type=radio][value=grabcut]").check()
        page.locator("input[type=number]").first.fill("160")
        page.wait_for_timeout(1500)  # dynamic form re-resolves
        shot(page, "03_compute_form.png")
        page.get_by_role("button", name="Execute", exact=True).click()

        # results land in the database, and the App reloads to show them
        wait_until(lambda: len(ds.exists("ewc_confidence")) == 2, 240, "ewc_confidence on both samples")
        ds.reload()
        assert {"ewc_mask", "ewc_heatmap_fused", "ewc_heatmap_gradcam", "ewc_heatmap_input_x_gradient"} <= set(
            ds.get_field_schema())
        assert "ewc_heatmap_layercam" not in ds.get_field_schema()  # the form's choice was used
        # the run saves its views and App config after the last sample's fields: wait for them
        wait_until(lambda: ds.reload() or "ewc-low-confidence" in ds.list_saved_views(), 120,
              "the run's triage views")
        ds.reload()
        page.wait_for_selector("text=ewc_confidence", timeout=60_000)  # sidebar after reload_dataset
        page.wait_for_selector("text=2 labeled, 0 failed", timeout=30_000)  # the operator's output
        page.wait_for_timeout(1000)
        shot(page, "04_after_compute.png")
        page.get_by_role("button", name="Close", exact=True).click()
        for _ in range(5):  # the output dialog closes; any other popover too
            if not page.locator(".MuiDialog-container").count():
                break
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)
        shot(page, "05_closed.png")

        # the triage views are in the saved-view selector
        page.get_by_text("Unsaved view").first.click()
        page.wait_for_selector("text=ewc-low-confidence", timeout=30_000)
        page.wait_for_timeout(1000)  # let the menu finish opening
        shot(page, "06_saved_views.png")
        assert not errors, errors


def test_review_loop_in_browser(app, artifacts, tmp_path):
    """Open the low-confidence view the demo prints, see each mask in its class colour (pixels),
    open the worst sample, Accept in the review panel, land on the next one; reject by keyboard."""
    import fiftyone.operators as foo

    from .conftest import FAST, URI

    ds, url = app
    if "ewc_confidence" not in ds.get_field_schema():  # the compute test did not run first
        foo.get_operator(f"{URI}/compute_ewc")(ds, "labels", **FAST)
    ds.reload()
    ds.untag_samples(["ewc:reviewed", "ewc:reject"])
    order = ds.sort_by("ewc_confidence").values("id")
    classes = [ds[i].labels.classifications[0].label for i in order]
    colors = scheme_colors(ds, "ewc_mask")
    assert colors[classes[0]] != colors[classes[1]]
    shot = lambda page, name: page.screenshot(path=os.path.join(artifacts, name))  # noqa: E731
    try:
        with browser_page(sync_api) as (page, errors):
            page.goto(f"{url}/datasets/{DATASET}?view=ewc-low-confidence", wait_until="domcontentloaded")
            page.wait_for_selector("[data-cy=looker]", timeout=90_000)
            page.wait_for_timeout(3000)
            dismiss_promo(page)
            if not page.locator("text=ewc-low-confidence").count():  # the server kept another tab's view
                page.get_by_text("Unsaved view").first.click()
                page.get_by_text("ewc-low-confidence").first.click()
            page.wait_for_selector("[data-cy=view-stage-container]", timeout=30_000)
            page.wait_for_timeout(2000)
            assert page.locator("text=ewc-low-confidence").count()
            # the run's sidebar group, with the mask and the confidence switched on
            page.wait_for_selector("[data-cy='sidebar-group-entry-EWC-FO EWC']", timeout=30_000)
            checkbox = field_checkbox(page, "ewc_mask")
            assert checkbox.is_checked()
            shot(page, "07_low_confidence_view.png")
            with_masks = [tile_pixels(page, i) for i in range(2)]
            checkbox.click()  # masks off: the pixels that change are the masks' pixels
            page.wait_for_timeout(2500)
            without = [tile_pixels(page, i) for i in range(2)]
            checkbox.click()
            page.wait_for_timeout(1500)
            for i in range(2):
                best, alpha, frac = drawn_color(without[i], with_masks[i], colors)
                assert frac > 0.02, f"tile {i}: the mask changed only {frac:.1%} of the pixels"
                assert best == classes[i] and 0.2 < alpha <= 1.05, (i, best, alpha, classes)

            # the worst sample, its review panel, Accept: the next worst opens
            page.locator("[data-cy=looker]").first.click()
            page.wait_for_selector("text=EWC review", timeout=30_000)
            page.get_by_text("EWC review").first.click()
            page.wait_for_selector("text=Review: 0 of 2 done", timeout=30_000)
            page.wait_for_timeout(1500)
            overlay = page.locator("img[alt='fused map over the photo, mask outlined']")
            assert overlay.count() and overlay.first.evaluate("i => i.naturalWidth") > 0
            assert f"id={order[0]}" in page.url
            shot(page, "08_review_panel.png")
            # the class chart: the sample's class, its bar and its name in the scheme's colour
            page.wait_for_selector("text=class confidence", timeout=30_000)
            drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(p =>
                [...p.querySelectorAll('.ytick text')].map((t, i) => ({
                    name: t.textContent,
                    text: getComputedStyle(t.querySelector('tspan') || t).fill,
                    bar: (p.querySelectorAll('.barlayer .point path')[i] || {}).style?.fill || null})))""")
            rgb = "rgb({}, {}, {})".format(*(int(v) for v in hex_rgb(colors[classes[0]])))
            mine = [d for d in drawn if d["name"] == classes[0]]
            assert mine and all(d["text"] == rgb and d["bar"] == rgb for d in mine), (drawn, rgb)
            page.get_by_role("button", name="Accept").first.click()
            page.wait_for_url(re.compile(f"id={order[1]}"), timeout=30_000)  # the next worst sample opened
            assert "ewc:reviewed" in ds[order[0]].tags
            page.wait_for_selector("text=Review: 1 of 2 done", timeout=30_000)
            page.wait_for_timeout(1500)
            shot(page, "09_after_accept.png")

            # keyboard: backtick, the operator's name, Enter
            page.keyboard.press("`")
            search = page.get_by_placeholder("Search operations by name...")
            search.wait_for(timeout=30_000)
            search.fill("EWC review: Reject")
            page.keyboard.press("Enter")
            for _ in range(30):
                if "ewc:reject" in ds[order[1]].tags:
                    break
                page.wait_for_timeout(1000)
            assert "ewc:reject" in ds[order[1]].tags
            page.wait_for_timeout(1500)
            shot(page, "10_after_keyboard_reject.png")
            assert not errors, errors
    finally:
        ds.untag_samples(["ewc:reviewed", "ewc:reject"])

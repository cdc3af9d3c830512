"""The plugin in the real App: headless Chromium runs the compute operator from the operator browser,
then walks the review loop (low-confidence view, masks in class colours, Accept -> next sample).

Needs Debian's ``chromium`` and Playwright's Python package (scripts/install_browser.sh);
skipped, with the reason, where they are missing. Screenshots go to ``$EWC_TEST_ARTIFACTS``
(default: a ``browser`` folder in the test session's temporary directory).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from ..fo._data import make_dataset

CHROMIUM = os.environ.get("EWC_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
DATASET = "plugin-app-browser"

if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
    pytest.skip(f"Chromium not installed at {CHROMIUM} (run scripts/install_browser.sh)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (scripts/install_browser.sh)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def artifacts():
    d = os.environ.get("EWC_TEST_ARTIFACTS") or os.path.join(
        os.environ.get("EWC_FO_TEST_TMP") or tempfile.mkdtemp(), "browser")
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def app(tmp_path_factory, plugin_env, artifacts):
    """A FiftyOne App server on loopback, on a two-photo dataset, with this repo's plugins."""
    ds = make_dataset(str(tmp_path_factory.mktemp("app_imgs")), DATASET, n=2)
    ds.persistent = True  # served by another process
    port = _free_port()
    log = open(os.path.join(artifacts, "app_server.log"), "w")
    server = subprocess.Popen([sys.executable, "-m", "fiftyone.server.main", "--port", str(port),
                               "--address", "127.0.0.1"], env=plugin_env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"App server did not start; see {log.name}") from None
                time.sleep(0.5)
        yield ds, url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        ds.delete()


def _wait(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_compute_operator_in_browser(app, artifacts):
    ds, url = app
    shot = lambda page, name: page.screenshot(path=os.path.join(artifacts, name), full_page=True)  # noqa: E731
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
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
            _wait(lambda: len(ds.exists("ewc_confidence")) == 2, 240, "ewc_confidence on both samples")
            ds.reload()
            assert {"ewc_mask", "ewc_heatmap_fused", "ewc_heatmap_gradcam", "ewc_heatmap_input_x_gradient"} <= set(
                ds.get_field_schema())
            assert "ewc_heatmap_layercam" not in ds.get_field_schema()  # the form's choice was used
            # the run saves its views and App config after the last sample's fields: wait for them
            _wait(lambda: ds.reload() or "ewc-low-confidence" in ds.list_saved_views(), 120,
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
        finally:
            browser.close()


def _tile_pixels(page, i: int) -> np.ndarray:
    box = page.locator("[data-cy=looker]").nth(i).bounding_box()
    png = page.screenshot(clip={k: box[k] for k in ("x", "y", "width", "height")})
    return np.asarray(Image.open(__import__("io").BytesIO(png)).convert("RGB")).astype(np.float32)


def _hex(c: str) -> np.ndarray:
    return np.array([int(c[k:k + 2], 16) for k in (1, 3, 5)], dtype=np.float32)


def _drawn_color(before: np.ndarray, after: np.ndarray, candidates: dict[str, str]) -> tuple[str, float, float]:
    """Which candidate colour was blended over the photo where the two screenshots differ:
    ``after = a * colour + (1 - a) * before`` fitted per candidate; the best fit wins."""
    changed = np.abs(after - before).sum(-1) > 40
    d, b = (after - before)[changed], before[changed]
    fits = {}
    for name, c in candidates.items():
        v = _hex(c) - b
        a = float((d * v).sum() / max((v * v).sum(), 1e-6))
        fits[name] = (float(np.abs(d - a * v).mean()), a)
    best = min(fits, key=lambda k: fits[k][0])
    return best, fits[best][1], float(changed.mean())


def _dismiss_promo(page):
    if page.get_by_role("button", name="Dismiss").count():  # the App's Enterprise promo
        page.get_by_role("button", name="Dismiss").first.click()
        page.wait_for_timeout(500)


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
    names = ds.mask_targets["ewc_mask"]
    scheme = next(f for f in ds.app_config.color_scheme.fields if f["path"] == "ewc_mask")
    colors = {names[m["intTarget"]]: m["color"] for m in scheme["maskTargetsColors"]}
    assert colors[classes[0]] != colors[classes[1]]
    shot = lambda page, name: page.screenshot(path=os.path.join(artifacts, name))  # noqa: E731
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/datasets/{DATASET}?view=ewc-low-confidence", wait_until="domcontentloaded")
            page.wait_for_selector("[data-cy=looker]", timeout=90_000)
            page.wait_for_timeout(3000)
            _dismiss_promo(page)
            if not page.locator("text=ewc-low-confidence").count():  # the server kept another tab's view
                page.get_by_text("Unsaved view").first.click()
                page.get_by_text("ewc-low-confidence").first.click()
            page.wait_for_selector("[data-cy=view-stage-container]", timeout=30_000)
            page.wait_for_timeout(2000)
            assert page.locator("text=ewc-low-confidence").count()
            # the run's sidebar group, with the mask and the confidence switched on
            page.wait_for_selector("[data-cy='sidebar-group-entry-EWC-FO EWC']", timeout=30_000)
            box = page.locator("[data-cy=sidebar-field-container-ewc_mask]").locator("xpath=..")
            checkbox = box.locator("input[type=checkbox]")
            assert checkbox.is_checked()
            shot(page, "07_low_confidence_view.png")
            with_masks = [_tile_pixels(page, i) for i in range(2)]
            checkbox.click()  # masks off: the pixels that change are the masks' pixels
            page.wait_for_timeout(2500)
            without = [_tile_pixels(page, i) for i in range(2)]
            checkbox.click()
            page.wait_for_timeout(1500)
            for i in range(2):
                best, alpha, frac = _drawn_color(without[i], with_masks[i], colors)
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
            rgb = "rgb({}, {}, {})".format(*(int(v) for v in _hex(colors[classes[0]])))
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
            browser.close()
            ds.untag_samples(["ewc:reviewed", "ewc:reject"])


@pytest.mark.skip(reason="unfinished (issue 22 item 3 browser test): after the review test the App server "
                  "reopens its sample view (?id=... in the URL) and neither Escape nor a new page load closed it; "
                  "the pixel checks below have not run yet")
def test_second_run_shows_one_mask_per_tile(app, artifacts, tmp_path):
    """Issue 22 item 3: after a second run with another prefix the grid draws that run's mask
    only. From the pixels of a tile: the mask the App shows is one blend of the class colour
    (switching the newest run's mask off removes it), and it is not what both runs' masks on
    the same tile look like (a second mask of the same colour blends stronger)."""
    import fiftyone.operators as foo

    from .conftest import FAST, URI

    ds, url = app
    if "ewc_confidence" not in ds.get_field_schema():  # the other tests did not run first
        foo.get_operator(f"{URI}/compute_ewc")(ds, "labels", output_dir=str(tmp_path / "first"), **FAST)
    foo.get_operator(f"{URI}/compute_ewc")(ds, "labels", prefix="again", output_dir=str(tmp_path / "again"), **FAST)
    ds.reload()
    active = ds.app_config.active_fields.paths
    assert "again_mask" in active and "ewc_mask" not in active
    names = ds.mask_targets["again_mask"]
    scheme = next(f for f in ds.app_config.color_scheme.fields if f["path"] == "again_mask")
    colors = {names[m["intTarget"]]: m["color"] for m in scheme["maskTargetsColors"]}
    shot = lambda page, name: page.screenshot(path=os.path.join(artifacts, name))  # noqa: E731
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/datasets/{DATASET}", wait_until="domcontentloaded")
            page.wait_for_selector("[data-cy=looker]", timeout=90_000)
            page.wait_for_timeout(3000)
            page.wait_for_selector("[data-cy=sidebar-field-container-again_mask]", timeout=30_000)
            field = page.locator("[data-cy=sidebar-field-container-again_mask]")
            promo = page.get_by_role("button", name="Dismiss")
            for _ in range(8):  # the App may reopen the sample another test left open, under its promo
                if field.count() == 1 and not promo.count():
                    break
                shot(page, "11_reopened_sample.png")
                if promo.count():
                    promo.first.dispatch_event("click")  # the sample view covers it: no real click lands
                else:
                    page.keyboard.press("Escape")
                page.wait_for_timeout(1500)
            assert field.count() == 1 and not promo.count(), "the sample view or the promo stayed open"

            def box(field):
                return (page.locator(f"[data-cy=sidebar-field-container-{field}]").locator("xpath=..")
                        .locator("input[type=checkbox]"))

            assert box("again_mask").is_checked() and not box("ewc_mask").is_checked()
            shot(page, "11_second_run.png")
            shown = _tile_pixels(page, 0)
            box("again_mask").click()  # no mask at all
            page.wait_for_timeout(2500)
            bare = _tile_pixels(page, 0)
            box("again_mask").click()
            box("ewc_mask").click()  # both runs' masks: what the App must not show by default
            page.wait_for_timeout(2500)
            both = _tile_pixels(page, 0)
            shot(page, "12_both_masks_by_hand.png")
            box("ewc_mask").click()
            page.wait_for_timeout(1500)
            best, alpha, frac = _drawn_color(bare, shown, colors)
            assert frac > 0.02, f"the shown mask changed only {frac:.1%} of the pixels"
            assert 0.2 < alpha <= 1.05, (best, alpha)
            best2, alpha2, frac2 = _drawn_color(bare, both, colors)
            assert best2 == best and alpha2 > alpha + 0.08, (alpha, alpha2)  # two blends, stronger
            assert not errors, errors
        finally:
            browser.close()

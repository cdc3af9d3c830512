"""What the App browser tests share: Chromium, an App server of their own, and reading pixels.

Needs Debian's ``chromium`` and Playwright's Python package (scripts/install_browser.sh);
:func:`require_browser` skips the calling test module, with the reason, where they are missing.
Screenshots go to ``$EWC_TEST_ARTIFACTS`` (default: a ``browser`` folder in the test session's
temporary directory).

Each test module serves its own dataset from its own App server (:func:`serve`): the server
remembers what a page last had open (a sample view, a saved view) and hands it to the next page
that loads the same dataset, so two modules sharing one would see each other's state.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests._mongod import free_port, stop

CHROMIUM = os.environ.get("EWC_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def require_browser():
    """Playwright's sync API, or a module-level skip naming what is missing."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"Chromium not installed at {CHROMIUM} (run scripts/install_browser.sh)", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="playwright not installed (scripts/install_browser.sh)")


def artifacts_dir() -> str:
    d = os.environ.get("EWC_TEST_ARTIFACTS") or os.path.join(
        os.environ.get("EWC_FO_TEST_TMP") or tempfile.mkdtemp(), "browser")
    os.makedirs(d, exist_ok=True)
    return d


@contextlib.contextmanager
def serve(env: dict, log_path: str):
    """A FiftyOne App server on loopback (a port of its own), for the life of the block: its URL."""
    port = free_port()
    log = open(log_path, "w")
    server = subprocess.Popen([sys.executable, "-m", "fiftyone.server.main", "--port", str(port),
                               "--address", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT,
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
        yield url
    finally:
        stop(server)
        log.close()


@contextlib.contextmanager
def browser_page(sync_api):
    """A 1400x1000 page in headless Chromium, and the page errors it collected."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


def wait_until(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def dismiss_promo(page):
    if page.get_by_role("button", name="Dismiss").count():  # the App's Enterprise promo
        page.get_by_role("button", name="Dismiss").first.click()
        page.wait_for_timeout(500)


def field_checkbox(page, field: str):
    """The sidebar checkbox that shows or hides ``field``."""
    return (page.locator(f"[data-cy=sidebar-field-container-{field}]").locator("xpath=..")
            .locator("input[type=checkbox]"))


def tile_pixels(page, i: int) -> np.ndarray:
    box = page.locator("[data-cy=looker]").nth(i).bounding_box()
    png = page.screenshot(clip={k: box[k] for k in ("x", "y", "width", "height")})
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float32)


def hex_rgb(c: str) -> np.ndarray:
    return np.array([int(c[k:k + 2], 16) for k in (1, 3, 5)], dtype=np.float32)


def scheme_colors(ds, mask_field: str) -> dict[str, str]:
    """Class name -> the colour ``mask_field``'s classes have in the dataset's colour scheme."""
    names = ds.mask_targets[mask_field]
    scheme = next(f for f in ds.app_config.color_scheme.fields if f["path"] == mask_field)
    return {names[m["intTarget"]]: m["color"] for m in scheme["maskTargetsColors"]}


def drawn_color(before: np.ndarray, after: np.ndarray, candidates: dict[str, str]) -> tuple[str, float, float]:
    """Which candidate colour was blended over the photo where the two screenshots differ:
    ``after = a * colour + (1 - a) * before`` fitted per candidate; the best fit wins.
    Returns (its name, ``a``, the share of pixels that changed)."""
    changed = np.abs(after - before).sum(-1) > 40
    d, b = (after - before)[changed], before[changed]
    fits = {}
    for name, c in candidates.items():
        v = hex_rgb(c) - b
        a = float((d * v).sum() / max((v * v).sum(), 1e-6))
        fits[name] = (float(np.abs(d - a * v).mean()), a)
    best = min(fits, key=lambda k: fits[k][0])
    return best, fits[best][1], float(changed.mean())

#!/usr/bin/env bash
# Install what the plugin's browser test needs: Debian's Chromium and Playwright's Python
# package (used with executable_path=/usr/bin/chromium; `playwright install` is never run,
# since it downloads its own browsers). Idempotent: does nothing when both are present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "install_browser: not root and no sudo; cannot install chromium (browser test will skip)" >&2
            exit 0
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q || echo "install_browser: apt-get update failed" >&2
    $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core \
        || echo "install_browser: could not install chromium (browser test will skip)" >&2
fi
if [ -x "$PY" ] && ! "$PY" -c "import playwright" >/dev/null 2>&1; then
    "$PY" -m pip install -q playwright || echo "install_browser: could not install playwright (browser test will skip)" >&2
fi

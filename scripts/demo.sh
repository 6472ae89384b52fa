#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the segmentation
# demo. Needs root. Extra arguments go to the demo (--keep leaves it running).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
exec ./build/tools/stockade-netns-demo "$@"

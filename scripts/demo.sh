#!/usr/bin/env bash
# The main job: installs what is missing, builds, makes sure dockerd runs
# with the test image, and runs the Docker demo (scripts/docker-demo.sh).
# Needs root.
#
#   scripts/demo.sh                 # the Docker demo; removes everything at the end
#   scripts/demo.sh --keep          # leaves it running (scripts/docker-demo.sh --down removes it)
#   scripts/demo.sh --netns [ARGS]  # the network-namespace demo, no Docker (--keep: up until Enter)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
if [ "${1:-}" = "--netns" ]; then
  shift
  exec ./build/tools/stockade-netns-demo "$@"
fi
./scripts/ensure-dockerd.sh
exec ./scripts/docker-demo.sh "$@"

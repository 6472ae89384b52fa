#!/usr/bin/env bash
# The whole test suite, as CI runs it. Needs root. ctest runs the tests in the
# order they are declared: unit tests (pure logic), then kernel tests (real
# programs through BPF_PROG_TEST_RUN, real attach), then end-to-end tests in
# network namespaces, then tests against a real dockerd. With CI=true a
# privileged test that cannot run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
if [ -x scripts/ensure-dockerd.sh ]; then
  ./scripts/ensure-dockerd.sh
fi
cd build
ctest --output-on-failure --timeout 600 "$@"

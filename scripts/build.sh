#!/usr/bin/env bash
# Builds build/understudy (and the unit tests) with warnings as errors.
# BUILD_DIR overrides the build folder; extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNDERSTUDY_WERROR=ON "$@" >/dev/null
ninja -C "$build"

#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test, as root on Debian 12:
#   1. the unit tests built with ASan and UBSan (build-asan/);
#   2. the release build (build/): unit tests again, then the network-namespace tests, which run
#      the real daemon, nginx and curl in namespaces they create and remove.
# BUILD_DIR overrides the build folder. CTEST_ARGS is passed to the final ctest (e.g. "-R lab.table1").
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}

scripts/install-deps.sh

echo "== unit tests under ASan/UBSan"
cmake -S . -B "$build-asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DUNDERSTUDY_SANITIZE=ON \
  -DUNDERSTUDY_WERROR=ON -DUNDERSTUDY_LAB_TESTS=OFF >/dev/null
ninja -C "$build-asan" unit_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$build-asan" --output-on-failure -j2

echo "== release build: unit and namespace tests"
BUILD_DIR="$build" scripts/build.sh
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure ${CTEST_ARGS:-}

#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test, as root on Debian 12:
#   1. the unit tests built with ASan and UBSan (build-asan/), and the crash-phase namespace tests
#      with that sanitized daemon (a memory error aborts it, and the test fails);
#   2. the libFuzzer targets (build-fuzz/, clang), each for FUZZ_SECONDS (default 25) seconds;
#   3. the release build (build/); the Debian package made from it, installed, checked and purged;
#      unit tests again, then every network-namespace test, which run the real daemon, nginx and
#      curl in namespaces they create and remove.
# BUILD_DIR overrides the build folder. CTEST_ARGS is passed to the final ctest (e.g. "-R lab.table1").
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}

scripts/install-deps.sh

echo "== ASan/UBSan: unit tests, then the crash-phase namespace tests with the sanitized daemon"
cmake -S . -B "$build-asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DUNDERSTUDY_SANITIZE=ON \
  -DUNDERSTUDY_WERROR=ON >/dev/null
ninja -C "$build-asan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
ctest --test-dir "$build-asan" --output-on-failure -j2 -L unit
ctest --test-dir "$build-asan" --output-on-failure -R '^lab\.(table2|http_failover|failover)\.'
unset ASAN_OPTIONS UBSAN_OPTIONS

echo "== fuzz: each libFuzzer target briefly from its seed corpus (fuzz/README.md)"
scripts/fuzz.sh --seconds "${FUZZ_SECONDS:-25}"

echo "== release build: unit and namespace tests"
BUILD_DIR="$build" scripts/build.sh
echo "== Debian package: build it from the release build, install, check, purge (docs/PACKAGING.md)"
deb=$(BUILD_DIR="$build" scripts/package.sh | tail -n 1)
packaging/check-package.sh "$deb"
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure ${CTEST_ARGS:-}

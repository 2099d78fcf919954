#!/usr/bin/env bash
# Builds the Debian package dist/understudy_<version>_<arch>.deb (docs/PACKAGING.md): the daemon
# (/usr/sbin/understudy), an example /etc/understudy/understudy.toml (a conffile), the systemd unit
# understudy.service (installed, not enabled or started), and the man pages understudy(8) and
# understudy.toml(5). <version> is the VERSION in CMakeLists.txt's project(); <arch> is dpkg's.
# Uses CPack's DEB generator (packaging/package.cmake). Run scripts/install-deps.sh first.
# BUILD_DIR overrides the build folder (default build-package; build/ is reused as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-package}

# The same flags as scripts/build.sh (the tested build); install does not rebuild the unit tests.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNDERSTUDY_WERROR=ON \
  -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON >/dev/null
ninja -C "$build" understudy man_pages
(cd "$build" && cpack -G DEB -B "$PWD/cpack" >/dev/null)
mkdir -p dist
deb=$(ls -t "$build"/cpack/understudy_*.deb | head -n 1)
cp "$deb" dist/
echo "dist/$(basename "$deb")"

#!/usr/bin/env bash
# Installs what is missing, builds, brings up the namespace lab and runs the failover demo
# (understudy_lab/demo.py), as root on Debian 12. Everything it creates is removed when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec /usr/bin/python3 -m understudy_lab.demo

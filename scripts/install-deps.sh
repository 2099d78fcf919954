#!/bin/sh
# Install everything Understudy needs on a fresh Debian 12, as root. Idempotent.
# Leaves no nginx running in the root namespace (the lab starts its own nginx
# instances inside network namespaces).
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root" >&2
    exit 1
fi

PACKAGES="build-essential cmake ninja-build pkg-config libhttp-parser-dev
libtomlplusplus-dev libcli11-dev libspdlog-dev nlohmann-json3-dev libssl-dev
libgtest-dev nginx-light nftables curl wrk ethtool iproute2 python3
clang-format procps psmisc haproxy keepalived python3-matplotlib tcpdump
python3-pyflakes hping3 slowhttptest python3-scapy libseccomp-dev libcap-dev clang-14
libclang-rt-14-dev linux-perf
libsystemd-dev man-db prometheus"

export DEBIAN_FRONTEND=noninteractive

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    echo "install-deps.sh: installing:$missing"
    apt-get update
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $missing
else
    echo "install-deps.sh: all packages already installed"
fi

# Debian's nginx, haproxy, keepalived and prometheus packages start their service in the root
# namespace: stop and disable them (the lab runs its own instances inside network namespaces;
# prometheus is here for `promtool check metrics`, tests/lab/test_metrics.py).
for svc in nginx haproxy keepalived prometheus; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
    else
        if command -v service >/dev/null 2>&1; then
            service "$svc" stop >/dev/null 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
    fi
done
# Whatever started it: stop a root-namespace nginx that uses the system pid file.
if [ -s /run/nginx.pid ]; then
    pid=$(cat /run/nginx.pid)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && [ "$(readlink /proc/"$pid"/ns/net)" = "$(readlink /proc/1/ns/net)" ]; then
        kill -QUIT "$pid" 2>/dev/null || true
    fi
fi

echo "install-deps.sh: done"

#!/usr/bin/env bash
# CI for the Debian package (scripts/test.sh): its contents, then install it with dpkg -i, check the
# installed example config with the installed binary, check that nothing was enabled or started,
# and purge it again, leaving the machine as it was. As root. Usage: check-package.sh DEB
set -euo pipefail
deb=$1
fail() { echo "check-package: $*" >&2; exit 1; }

if dpkg-query -W -f='${Status}' understudy 2>/dev/null | grep -q 'ok installed'; then
  fail "understudy is installed on this machine already; not touching it"
fi

# Contents: the daemon, the conffile, the unit, both man pages, the maintainer scripts.
listing=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/sbin/understudy ./etc/understudy/understudy.toml \
  ./lib/systemd/system/understudy.service ./usr/share/man/man8/understudy.8.gz \
  ./usr/share/man/man5/understudy.toml.5.gz; do
  grep -qxF "$f" <<<"$listing" || fail "$deb lacks $f"
done
[ "$(dpkg-deb -I "$deb" conffiles)" = /etc/understudy/understudy.toml ] ||
  fail "conffiles is not exactly /etc/understudy/understudy.toml"
for s in postinst prerm postrm; do dpkg-deb -I "$deb" "$s" >/dev/null || fail "no $s"; done

# The man pages render without warnings (from the .deb: minimal images drop /usr/share/man).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; dpkg -P understudy >/dev/null 2>&1 || true' EXIT
dpkg-deb -x "$deb" "$tmp"
for page in man8/understudy.8.gz man5/understudy.toml.5.gz; do
  warnings=$(MANWIDTH=80 man --warnings -l "$tmp/usr/share/man/$page" 2>&1 >/dev/null)
  [ -z "$warnings" ] || fail "$page: $warnings"
done

dpkg -i "$deb" >/dev/null
key=/etc/understudy/peer.key
[ "$(stat -c '%a %U' "$key")" = "600 root" ] || fail "$key is not mode 600, root's"
out=$(/usr/sbin/understudy check --config /etc/understudy/understudy.toml) ||
  fail "the installed example config fails check: $out"
echo "check-package: installed; $out"
if command -v systemd-analyze >/dev/null; then
  # --man=no: the pages may be filtered out of a minimal image (they were checked above).
  warnings=$(systemd-analyze verify --man=no /lib/systemd/system/understudy.service 2>&1) ||
    fail "systemd-analyze verify: $warnings"
  [ -z "$warnings" ] || fail "systemd-analyze verify: $warnings"
fi
# Nothing enabled, nothing started.
[ ! -e /etc/systemd/system/multi-user.target.wants/understudy.service ] ||
  fail "the unit was enabled at install"
for exe in /proc/[0-9]*/exe; do
  [ "$(readlink "$exe" 2>/dev/null)" != /usr/sbin/understudy ] || fail "a daemon was started"
done

dpkg -r understudy >/dev/null
[ ! -e /usr/sbin/understudy ] || fail "dpkg -r left /usr/sbin/understudy"
[ -e /etc/understudy/understudy.toml ] || fail "dpkg -r removed the conffile (purge does)"
dpkg -P understudy >/dev/null
[ ! -e /etc/understudy ] || fail "dpkg -P left /etc/understudy"
echo "check-package: $deb ok (contents, install, check, not started, remove, purge)"

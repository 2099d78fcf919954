#!/usr/bin/env bash
# Checks that a built binary kept the hardening CMakeLists.txt asks for (UNDERSTUDY_HARDEN), so a
# build change cannot drop it silently. CTest runs it as build.hardening:
#   scripts/check-hardening.sh build/understudy [--no-fortify]
# Checks: PIE (ELF type DYN with a PIE flag), full RELRO (a GNU_RELRO segment and BIND_NOW), a
# non-executable stack, stack canaries (__stack_chk_fail imported) and _FORTIFY_SOURCE (at least
# one __*_chk function imported).
set -uo pipefail
bin=${1:?usage: check-hardening.sh BINARY [--no-fortify]}
fortify=1
[ "${2:-}" = --no-fortify ] && fortify=0  # a Debug build: _FORTIFY_SOURCE needs optimisation
fails=0
check() {  # check NAME COMMAND...: prints ok/FAIL per property
  if "${@:2}" >/dev/null 2>&1; then
    echo "ok    $1"
  else
    echo "FAIL  $1"
    fails=$((fails + 1))
  fi
}
header=$(readelf -h "$bin") || exit 1
dynamic=$(readelf -d "$bin")
segments=$(readelf -lW "$bin")
imports=$(nm -D --undefined-only "$bin" | awk '{print $NF}')

check "PIE: ELF type DYN" grep -qE 'Type:[[:space:]]+DYN' <<<"$header"
check "PIE: FLAGS_1 PIE" grep -qE 'FLAGS_1.*\bPIE\b' <<<"$dynamic"
check "full RELRO: GNU_RELRO segment" grep -qw GNU_RELRO <<<"$segments"
check "full RELRO: BIND_NOW" grep -qE '\(BIND_NOW\)|FLAGS_1.*\bNOW\b' <<<"$dynamic"
check "non-executable stack" grep -qE 'GNU_STACK.* RW  ' <<<"$segments"
check "stack protector: __stack_chk_fail" grep -qE '^__stack_chk_fail(@|$)' <<<"$imports"
if [ $fortify = 1 ]; then
  check "_FORTIFY_SOURCE: __*_chk imports" grep -qE '^__[a-z_]+_chk(@|$)' <<<"$imports"
fi
echo "fortified: $(grep -E '^__[a-z_]+_chk' <<<"$imports" | grep -v __stack_chk | cut -d@ -f1 |
  sort -u | tr '\n' ' ')"
exit $((fails > 0))

#!/usr/bin/env bash
# Static checks of the Python package understudy_lab (no root needed): no sys.path edits, every
# module imports on its own, and pyflakes (python3-pyflakes) finds nothing in the package, the lab tests,
# the fuzz helpers or the examples.
set -euo pipefail
cd "$(dirname "$0")/.."
py=/usr/bin/python3
if grep -rn --include='*.py' 'sys\.path' understudy_lab tests; then
  echo "check-python: sys.path edits found" >&2
  exit 1
fi
# Each module in a fresh interpreter, so one module's imports cannot hide another's missing one.
# __main__ modules run the programs, so they are left out.
n=0
while read -r mod; do
  "$py" -c "import $mod" || { echo "check-python: import $mod failed" >&2; exit 1; }
  n=$((n + 1))
done < <("$py" -c '
import pkgutil, understudy_lab
print("understudy_lab")
for m in pkgutil.walk_packages(understudy_lab.__path__, "understudy_lab."):
    if not m.name.endswith(".__main__"):
        print(m.name)')
echo "check-python: $n modules import"
# Doctests: the bench's perf-output parser and stack collapser (understudy_lab/bench/cpuprof.py).
"$py" -m doctest understudy_lab/bench/cpuprof.py
echo "check-python: doctests pass"
if "$py" -c 'import pyflakes' 2>/dev/null; then
  "$py" -m pyflakes understudy_lab tests/lab fuzz examples
  echo "check-python: pyflakes clean"
else
  echo "check-python: pyflakes not installed (apt-get install python3-pyflakes); skipped"
fi

#!/usr/bin/env python3
"""Checks that every #include "folder/..." in src/ points down the layer order of
docs/ARCHITECTURE.md ("Layers"): a file may include its own folder and the folders listed for it
below, never one above. Prints each offending line; exit 1 if there is any."""
import pathlib
import re
import sys

# folder -> folders it may include (besides itself). Keep in step with docs/ARCHITECTURE.md.
BELOW = {
    "common": set(),
    "wire": {"common"},
    "core": {"common", "wire"},
    "crypto": {"common", "wire", "core"},
    "http": {"common", "wire", "core"},
    "sys": {"common", "wire", "core"},
    "packet": {"common", "wire", "core"},
    "config": {"common", "wire", "core", "crypto"},
    "peer": {"common", "wire", "core", "crypto", "sys"},
    "metrics": {"common", "wire", "core", "sys"},
    "message": {"common", "wire", "core", "http", "peer", "sys"},
    "node": {"common", "wire", "core", "crypto", "http", "sys", "packet", "config", "peer",
             "message", "metrics"},
    "cli": {"common", "wire", "core", "crypto", "config", "node"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/')


def main() -> int:
    src = pathlib.Path(__file__).resolve().parent.parent / "src"
    bad = []
    for path in sorted(src.rglob("*.[ch]pp")):
        folder = path.relative_to(src).parts[0]
        if folder not in BELOW:
            bad.append(f"{path.relative_to(src)}: folder {folder!r} has no place in the layer order")
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = INCLUDE.match(line)
            if m and m.group(1) != folder and m.group(1) not in BELOW[folder]:
                bad.append(f"src/{path.relative_to(src)}:{n}: {folder} may not include "
                           f"{m.group(1)}/ (a higher or sibling layer): {line.strip()}")
    for b in bad:
        print(b)
    print(f"check_layers: {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

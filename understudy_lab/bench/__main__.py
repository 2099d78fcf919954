"""python3 -m understudy_lab.bench: what bench/run runs."""
import sys

from understudy_lab.bench.runner import main

sys.exit(main(sys.argv[1:]))

"""python3 -m understudy_lab.chaos: what chaos/run runs."""
import sys

from understudy_lab.chaos.runner import main

sys.exit(main())

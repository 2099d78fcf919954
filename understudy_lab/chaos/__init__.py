"""The crash-under-load harness (chaos/run; docs/RELIABILITY.md): runner.py runs trials planned by
plan.py in chaoslab.py's lab, with loadclient.py as the verifying load in the client namespace;
summary.py prints the per-trial lines and totals, report.py writes the markdown report."""

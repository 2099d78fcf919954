"""The benchmark (bench/run; docs/PERFORMANCE.md): runner.py drives benchlab.py's lab through the
modes of scenarios.py, report.py writes the results; lat_client.py, load_client.py and
hold_client.py (with httpc.py) run in the client namespace."""

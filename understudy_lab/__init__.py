"""Understudy's Python tooling: the network-namespace lab, the benchmark and the chaos harness.

  lab.py          the Lab facade (``from understudy_lab import lab as ul``), composed of
  topology.py     namespaces, bridge, veths, addresses, nftables loss rules, state files, cleanup
  processes.py    nginx, the echo back-end and the daemons: start, wait, status, stop, crash
  configs.py      workdir layout, served content, daemon TOML, nginx config, peer key
  common.py       addresses and names, errors, sh(), wait_for(), pid helpers
  cli.py          lab/lab;  demo.py: scripts/demo.sh
  echo_backend.py, timed_fetch.py, request_stream.py   run inside the namespaces (python3 -m ...)
  bench/          bench/run;  chaos/  chaos/run

Modules are imported, and run with ``python3 -m``, from the repository root (or with it on
PYTHONPATH, as the entry scripts set it). Nothing here is imported at package import time, so
the programs run in the namespaces start without loading the lab.
"""

"""Shared fixture for the tests that run the real daemon: a fresh lab per test, both nodes in
duplex, helpers to arm fault points, crash nodes, run clients in the background and check bodies
byte-exact against the lab's manifest. Daemon logs are printed when a test fails.
"""
import json
import os
import subprocess
import sys
import unittest

from understudy_lab import lab as ul

NEEDS_ROOT = unittest.skipUnless(os.geteuid() == 0, "needs root (network namespaces)")
BINARY = os.environ.get("UNDERSTUDY_BINARY", os.path.join(ul.REPO_ROOT, "build", "understudy"))
URL = f"http://{ul.ADVERTISED_IP}"
TIMED_FETCH = ul.python_module("understudy_lab.timed_fetch")


@NEEDS_ROOT
class NodeCase(unittest.TestCase):
    """setUp: lab up, key, configs. start_duplex() starts both daemons and waits for duplex."""

    config_overrides = {}

    def setUp(self):
        self.lab = ul.Lab(binary=BINARY)
        self.addCleanup(self.lab.down)
        self.lab.up()
        if os.environ.get("UNDERSTUDY_LAB_KEEP"):
            sys.stderr.write(f"\nlab workdir: {self.lab.workdir}\n")
        self.addCleanup(self._logs_on_failure)
        self.lab.keygen()
        for node in ("primary", "backup"):
            self.lab.write_config(node, **self.config_overrides)
        self.background = []

    def _logs_on_failure(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        failed = result is not None and any(
            t is self for t, _ in list(result.errors) + list(result.failures))
        if failed or os.environ.get("UNDERSTUDY_TEST_LOGS"):
            for node in ("primary", "backup"):
                sys.stderr.write(f"\n----- {node} daemon log (tail) -----\n")
                sys.stderr.write(self.lab.log_tail(node, "understudy", 6000))
        for p in self.background:
            if p.poll() is None:
                p.kill()
                p.wait()

    # ---- daemons
    def start_duplex(self, primary_env=None, backup_env=None):
        self.lab.start_node("primary", env=primary_env)
        self.lab.start_node("backup", env=backup_env)
        self.lab.wait_status("primary", mode="duplex", channel_up=True)
        self.lab.wait_status("backup", mode="duplex", front=True)

    def status(self, node):
        return self.lab.node_status(node)

    def arm(self, node, point):
        """Arm a fault point (docs/FAULTS.md) in a running node: it dies there like a host."""
        cp = self.lab.run_in(node, [BINARY, "fault", "--config", self.lab.config_path(node), point],
                             check=False)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)

    def wait_dead(self, node, timeout=20):
        """Wait until the node's daemon has died (a fault point fired)."""
        ul.wait_for(lambda: not self.lab.daemon_pids(node), timeout, f"{node} daemon to die")

    def wait_survivor(self, node, timeout=10):
        return self.lab.wait_status(node, timeout=timeout, mode="simplex", front=True, failovers=1)

    # ---- clients
    def spawn_client(self, args):
        """Start a command in the client namespace; returns the Popen (stdout/stderr piped)."""
        p = subprocess.Popen(["ip", "netns", "exec", self.lab.ns("client")] + list(args),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.background.append(p)
        return p

    def finish(self, p, timeout=120):
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err

    def timed_fetch(self, paths, rate=0, ready=None, timeout=60):
        """Start understudy_lab/timed_fetch.py on one keep-alive connection; returns the Popen."""
        args = TIMED_FETCH + [URL + paths[0]] + list(paths[1:])
        if rate:
            args += ["--rate", str(rate)]
        if ready:
            args += ["--ready", ready]
        args += ["--timeout", str(timeout)]
        return self.spawn_client(args)

    def timed_result(self, p, timeout=120):
        rc, out, err = self.finish(p, timeout)
        try:
            res = json.loads(out.decode())
        except ValueError:
            self.fail(f"timed_fetch printed no JSON (rc {rc}): {out!r} {err!r}")
        self.assertTrue(res.get("ok"), f"client failed: {res}")
        return res["results"]

    def assert_reply(self, r, path):
        size, sha = self.lab.manifest[path]
        self.assertEqual(r["status"], 200, r)
        self.assertEqual(r["size"], size, r)
        self.assertEqual(r["sha256"], sha, r)

    def ready_file(self, name="ready"):
        path = os.path.join(self.lab.workdir, "client-" + name)
        if os.path.exists(path):
            os.unlink(path)
        return path

    def wait_file(self, path, timeout=20):
        ul.wait_for(lambda: os.path.exists(path), timeout, f"{path} to appear")

"""Shared fixture for the tests that run the real daemon: a fresh lab per test, both nodes in
duplex, helpers to arm fault points, crash nodes, run clients in the background and check bodies
byte-exact against the lab's manifest. Daemon logs are printed when a test fails.
"""
import json
import os
import subprocess
import sys
import time
import unittest

from understudy_lab import lab as ul

NEEDS_ROOT = unittest.skipUnless(os.geteuid() == 0, "needs root (network namespaces)")
BINARY = os.environ.get("UNDERSTUDY_BINARY", os.path.join(ul.REPO_ROOT, "build", "understudy"))
URL = f"http://{ul.ADVERTISED_IP}"
TIMED_FETCH = ul.python_module("understudy_lab.timed_fetch")
REQUEST_STREAM = ul.python_module("understudy_lab.request_stream")


@NEEDS_ROOT
class NodeCase(unittest.TestCase):
    """setUp: lab up, key, configs. start_duplex() starts both daemons and waits for duplex."""

    config_overrides = {}
    lab_options = {}  # LabOptions fields, e.g. offloads=False

    def setUp(self):
        self.lab = ul.Lab(binary=BINARY, **self.lab_options)
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

    # ---- request streams (understudy_lab/request_stream.py): one background client across events
    def stream(self, name, paths, interval_ms=0, new_connections=False, gate=False, count=0,
               timeout=30):
        """Start request_stream in the client; returns a handle dict (see stream_outcome)."""
        h = {"name": name, "stop": self.ready_file(name + "-stop"),
             "progress": self.ready_file(name + "-progress")}
        args = REQUEST_STREAM + [URL + paths[0]] + list(paths[1:]) + [
            "--stop", h["stop"], "--progress", h["progress"], "--timeout", str(timeout)]
        if interval_ms:
            args += ["--interval-ms", str(interval_ms)]
        if new_connections:
            args.append("--new-connections")
        if count:
            args += ["--count", str(count)]
        if gate:
            h["gate"] = self.ready_file(name + "-gate")
            os.mkfifo(h["gate"])
            args += ["--gate", h["gate"]]
        h["p"] = self.spawn_client(args)
        return h

    def replies(self, h):
        try:
            with open(h["progress"]) as f:
                return int(f.read() or 0)
        except FileNotFoundError:
            return 0

    def wait_replies(self, h, n, timeout=30):
        """Wait until stream ``h`` has ``n`` replies; a client that ended early fails the test."""
        def probe():
            if self.replies(h) >= n:
                return True
            if h["p"].poll() is not None:
                out, err = h["p"].communicate()
                raise ul.LabError(f"{h['name']} ended after {self.replies(h)} replies "
                                  f"(wanted {n}): {out!r} {err!r}")
            return False
        ul.wait_for(probe, timeout, f"{h['name']}: {n} replies")

    def open_gate(self, h, timeout=10):
        """Let a gated stream go on (its reader is blocked on the FIFO; never block the test)."""
        fd = ul.wait_for(lambda: os.open(h["gate"], os.O_WRONLY | os.O_NONBLOCK), timeout,
                         f"{h['name']} to wait at its gate")
        os.write(fd, b"go")
        os.close(fd)

    def stream_outcome(self, h, timeout=60, stop=True):
        """Stop the stream (unless ``stop`` is false: it ends by itself) and wait for it; check
        every reply it got byte-exact; return its JSON ({"ok", "error", "results"}) and the
        monotonic time it was seen to end."""
        if stop:
            open(h["stop"], "w").close()
        rc, out, err = self.finish(h["p"], timeout)
        ended = time.monotonic()
        try:
            res = json.loads(out.decode())
        except ValueError:
            self.fail(f"{h['name']} printed no JSON (rc {rc}): {out!r} {err!r}")
        self.assertEqual(rc, 0 if res["ok"] else 1, err)
        for r in res["results"]:
            self.assertEqual((r["status"], r["size"], r["sha256"]),
                             (200,) + self.lab.manifest[r["path"]], f"{h['name']}: {r}")
        return res, ended

    def stream_results(self, h, timeout=60):
        """Stop the stream, check every reply byte-exact and that none failed; return them."""
        res, _ = self.stream_outcome(h, timeout)
        self.assertTrue(res["ok"], f"{h['name']}: {res['error']}")
        return res["results"]

    def assert_one_connection(self, h, results):
        ports = {r["port"] for r in results}
        self.assertEqual(len(ports), 1, f"{h['name']}: its keep-alive connection was replaced: {ports}")

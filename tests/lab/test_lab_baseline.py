"""Baseline tests of the namespace lab itself; they do NOT need the understudy daemon.

Run:  cd <repo> && /usr/bin/python3 -m unittest -v tests/lab/test_lab_baseline.py   (as root)
"""

import email.utils
import ipaddress
import json
import os
import signal
import subprocess
import textwrap
import unittest

from understudy_lab import lab as ul

NEEDS_ROOT = unittest.skipUnless(os.geteuid() == 0, "needs root (network namespaces)")
LAN = ipaddress.ip_network("198.18.0.0/24")


def direct(node):
    return f"http://{ul.NODE_IPS[node]}:{ul.NGINX_PORT}"


@NEEDS_ROOT
class BaselineTest(unittest.TestCase):
    """One lab (nginx also on the LAN addresses) shared by the tests of this class."""

    @classmethod
    def setUpClass(cls):
        cls.lab = ul.Lab(lan_listen=True)
        cls.addClassCleanup(cls.lab.down)
        cls.lab.up()

    def tearDown(self):
        self.lab.clear_loss()

    def test_files_byte_exact_from_both_nodes(self):
        self.assertEqual(len(self.lab.manifest), 7)
        for node in ul.SERVER_NODES:
            for path, (size, sha) in self.lab.manifest.items():
                with self.subTest(node=node, path=path):
                    r = self.lab.curl_fetch(path, base=direct(node), max_time=60)
                    self.assertEqual(r.rc, 0, r.stderr)
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.size, size)
                    self.assertEqual(r.sha256, sha)
                    self.assertGreaterEqual(r.time_total, r.time_starttransfer)

    def test_content_is_deterministic(self):
        # Same seed -> same manifest, independent of the lab instance.
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            self.assertEqual(ul.make_content(d), self.lab.manifest)
            st = os.stat(os.path.join(d, "f", "1k.bin"))
            self.assertEqual(int(st.st_mtime), ul.FIXED_MTIME)

    def test_identical_validators_on_both_nodes(self):
        headers = {}
        for node in ul.SERVER_NODES:
            cp = self.lab.run_client(["curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10",
                                      direct(node) + "/f/100k.bin"], timeout=20)
            self.assertEqual(cp.returncode, 0, cp.stderr)
            h = {}
            for line in cp.stdout.decode().splitlines()[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    h[k.strip().lower()] = v.strip()
            headers[node] = h
        for k in ("etag", "last-modified", "content-length"):
            self.assertEqual(headers["primary"][k], headers["backup"][k], k)
        self.assertEqual(email.utils.parsedate_to_datetime(headers["primary"]["last-modified"]).timestamp(),
                         ul.FIXED_MTIME)

    def test_echo_post_1m(self):
        body, sha = self.lab.make_body(1 << 20)
        for node in ul.SERVER_NODES:
            with self.subTest(node=node):
                r = self.lab.curl_fetch("/echo", base=direct(node), data_file=body, keep_body=True)
                self.assertEqual((r.rc, r.status), (0, 200), r.stderr)
                reply = json.loads(r.body)
                self.assertEqual(reply["length"], 1 << 20)
                self.assertEqual(reply["sha256"], sha)
                self.assertEqual(reply["node"], node)

    def test_echo_slow(self):
        r = self.lab.curl_fetch("/echo/slow?ms=300", base=direct("primary"), keep_body=True)
        self.assertEqual(r.status, 200, r.stderr)
        self.assertEqual(json.loads(r.body)["slept_ms"], 300)
        self.assertGreaterEqual(r.time_starttransfer, 0.3)

    def test_drop_once_drops_exactly_one_packet(self):
        size, sha = self.lab.manifest["/f/1m.bin"]
        rule = self.lab.drop_once("primary", "client", match="meta length > 1000")
        self.assertEqual(self.lab.dropped(rule), 0)
        r = self.lab.curl_fetch("/f/1m.bin", base=direct("primary"), max_time=60)
        self.assertEqual((r.rc, r.status, r.size, r.sha256), (0, 200, size, sha), r.stderr)
        self.assertEqual(self.lab.dropped(rule), 1)
        # A second transfer passes many more matching packets: still exactly one dropped.
        r = self.lab.curl_fetch("/f/1m.bin", base=direct("primary"), max_time=60)
        self.assertEqual((r.rc, r.sha256), (0, sha), r.stderr)
        self.assertEqual(self.lab.dropped(rule), 1)
        # Rules are per direction: nothing in the other direction or to another port matched.
        other = self.lab.drop_once("backup", "client", match="meta length > 1000")
        r = self.lab.curl_fetch("/f/1m.bin", base=direct("primary"), max_time=60)
        self.assertEqual(r.sha256, sha)
        self.assertEqual(self.lab.dropped(other), 0)

    def test_drop_once_with_tcp_flag_match(self):
        rule = self.lab.drop_once("client", "primary", match="tcp flags & (syn|ack) == ack")
        r = self.lab.curl_fetch("/f/100k.bin", base=direct("primary"))
        self.assertEqual(r.sha256, self.lab.manifest["/f/100k.bin"][1], r.stderr)
        self.assertEqual(self.lab.dropped(rule), 1)

    def test_drop_random_and_clear(self):
        size, sha = self.lab.manifest["/f/64m.bin"]
        rule = self.lab.drop_random(5, "primary", "client", match="meta length > 1000")
        r = self.lab.curl_fetch("/f/64m.bin", base=direct("primary"), max_time=120)
        self.assertEqual((r.rc, r.size, r.sha256), (0, size, sha), r.stderr)
        # With offloads on the bridge sees TSO packets of up to 64 KiB: over 1000 of them at 5%,
        # P(no drop) < 1e-22.
        self.assertGreater(self.lab.dropped(rule), 0)
        self.lab.clear_loss()
        self.assertEqual(self.lab.loss_rules(), [])

    def test_isolation_and_addresses(self):
        for node in ("lan",) + ul.NODES:
            with self.subTest(node=node):
                cp = self.lab.run_in(node, ["ip", "-j", "route", "show", "table", "all"], check=True)
                for route in json.loads(cp.stdout or b"[]"):
                    dst = route.get("dst", "")
                    if route.get("type") in ("local", "broadcast") and route.get("dev") == "lo":
                        continue
                    self.assertNotEqual(dst, "default", route)
                    if dst and route.get("dev") == "eth0":
                        net = ipaddress.ip_network(dst, strict=False)
                        self.assertTrue(net.subnet_of(LAN), route)
                cp = self.lab.run_in(node, ["ip", "-j", "addr", "show"], check=True)
                links = {l["ifname"]: l for l in json.loads(cp.stdout)}
                if node == "lan":
                    self.assertEqual(set(links), {"lo", "br0", "v-client", "v-primary", "v-backup"})
                    self.assertEqual([a for l in links.values() if l["ifname"] != "lo"
                                      for a in l.get("addr_info", [])], [])
                else:
                    self.assertEqual(set(links), {"lo", "eth0"})
                    self.assertEqual([a["local"] for a in links["eth0"]["addr_info"]], [ul.NODE_IPS[node]])
                    self.assertEqual(links["eth0"]["mtu"], 1500)
                    cp = self.lab.run_in(node, ["sysctl", "-n", "net.ipv4.ip_forward"], check=True)
                    self.assertEqual(cp.stdout.strip(), b"0")
        # The client can reach nothing outside the lab subnet (no packet is sent: route lookup only).
        cp = self.lab.run_client(["ip", "route", "get", "198.19.0.1"])
        self.assertNotEqual(cp.returncode, 0)
        cp = self.lab.run_client(["ip", "route", "get", ul.ADVERTISED_IP])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn(b"dev eth0", cp.stdout)

    def test_offloads_left_on_at_both_ends(self):
        # The daemon runs with the kernel's defaults (issue 11): a veth segments and checksums
        # nothing itself, so the nodes' taps see TSO super-segments with partial checksums.
        ends = [("lan", f"v-{n}") for n in ul.NODES] + [(n, "eth0") for n in ul.NODES]
        for node, ifname in ends:
            with self.subTest(node=node, ifname=ifname):
                cp = self.lab.run_in(node, ["ethtool", "-k", ifname], check=True)
                feats = dict(l.strip().split(": ", 1) for l in cp.stdout.decode().splitlines()
                             if ": " in l)
                for f in ("tx-checksumming", "tcp-segmentation-offload", "generic-segmentation-offload",
                          "scatter-gather"):
                    self.assertTrue(feats[f].startswith("on"), f"{f}: {feats[f]}")

    def test_config_format(self):
        wd = self.lab.workdir
        expected = textwrap.dedent(f"""\
            [service]
            advertised = "198.18.0.100:80"
            interface  = "eth0"
            [node]
            role    = "backup"
            address = "198.18.0.12"
            server  = "127.0.0.1:8080"
            control_socket = "{wd}/backup/control.sock"
            [peer]
            address  = "198.18.0.11"
            key_file = "{wd}/peer.key"
            [heartbeat]
            interval_ms = 20
            timeout_ms  = 100
            """)
        path = self.lab.write_config("backup")
        self.assertEqual(path, os.path.join(wd, "backup", "understudy.toml"))
        with open(path) as f:
            self.assertEqual(f.read(), expected)
        with open(self.lab.write_config("primary", heartbeat_timeout_ms=250, extra={"flag": True})) as f:
            text = f.read()
        self.assertIn('role    = "primary"', text)
        self.assertIn("timeout_ms  = 250", text)
        self.assertIn("[extra]\nflag = true", text)

    def test_daemon_helpers_fail_clearly_without_binary(self):
        lab = ul.Lab(prefix=self.lab.prefix, workdir=self.lab.workdir, binary="/nonexistent/understudy")
        with self.assertRaises(ul.BinaryMissing):
            lab.keygen()
        with self.assertRaises(ul.BinaryMissing):
            lab.start_node("primary")

    def test_wait_for_reports_clearly(self):
        with self.assertRaises(TimeoutError) as cm:
            ul.wait_for(lambda: False, 0.1, "the impossible", details=lambda: "detail-xyz")
        self.assertIn("the impossible", str(cm.exception))
        self.assertIn("detail-xyz", str(cm.exception))


CHILD = textwrap.dedent("""\
    import sys
    from understudy_lab import lab as ul
    lab = ul.Lab().up()
    print(lab.prefix, lab.workdir, flush=True)
    sys.stdin.read()   # block until the parent signals us (an event, not a sleep)
    """)


@NEEDS_ROOT
class LifecycleTest(unittest.TestCase):

    def assertGone(self, prefix, workdir=None, pids=()):
        self.assertEqual([n for n in ul.list_netns() if n.startswith(prefix + "-")], [])
        self.assertFalse(os.path.exists(ul.state_path(prefix)))
        if workdir:
            self.assertFalse(os.path.exists(workdir))
        for pid in pids:
            self.assertFalse(ul.pid_alive(pid) and ul.proc_state(pid) != "Z", f"pid {pid} alive")

    def test_down_removes_everything(self):
        lab = ul.Lab()
        self.addCleanup(lab.down)
        with lab:
            self.assertTrue(ul.PREFIX_RE.match(lab.prefix))
            self.assertEqual(sorted(n for n in ul.list_netns() if n.startswith(lab.prefix + "-")),
                             sorted(lab.namespaces))
            pids = [p for ns in lab.namespaces for p in ul.ns_pids(ns)]
            self.assertGreaterEqual(len(pids), 6)  # 2 x (echo + nginx master + workers)
        self.assertGone(lab.prefix, lab.workdir, pids)
        lab.down()  # idempotent

    def test_exception_inside_with_cleans_up(self):
        lab = ul.Lab()
        with self.assertRaises(ZeroDivisionError):
            with lab:
                1 / 0
        self.assertGone(lab.prefix, lab.workdir)

    def test_two_labs_side_by_side(self):
        with ul.Lab() as a, ul.Lab() as b:
            self.assertNotEqual(a.prefix, b.prefix)
            for lab in (a, b):
                r = lab.curl_fetch("/f/10k.bin", base="http://127.0.0.1:8080", node="primary")
                self.assertEqual(r.sha256, lab.manifest["/f/10k.bin"][1], r.stderr)
        self.assertGone(a.prefix)
        self.assertGone(b.prefix)

    def _child_lab(self):
        p = subprocess.Popen(["/usr/bin/python3", "-c", CHILD], env=dict(os.environ, PYTHONPATH=ul.REPO_ROOT),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        def reap():
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        self.addCleanup(reap)
        line = p.stdout.readline().decode().split()  # blocks until the child's lab is up
        self.assertEqual(len(line), 2, p.stderr.read().decode() if p.poll() is not None else "")
        self.addCleanup(ul.cleanup_stale, line[0])
        return p, line[0], line[1]

    def test_sigterm_cleans_up(self):
        p, prefix, workdir = self._child_lab()
        self.assertTrue(os.path.exists(ul.state_path(prefix)))
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=60), 128 + signal.SIGTERM, p.stderr.read().decode())
        self.assertGone(prefix, workdir)

    def test_sigint_cleans_up(self):
        p, prefix, workdir = self._child_lab()
        p.send_signal(signal.SIGINT)
        self.assertNotEqual(p.wait(timeout=60), 0)
        self.assertGone(prefix, workdir)

    def test_orphans_of_a_killed_owner_are_cleaned(self):
        p, prefix, workdir = self._child_lab()
        p.kill()  # SIGKILL: no handler can run (like a ctest timeout)
        p.wait(timeout=30)
        self.assertTrue(any(n.startswith(prefix + "-") for n in ul.list_netns()))
        self.assertIn(prefix, ul.cleanup_orphans())
        self.assertGone(prefix, workdir)

    def test_cleanup_stale_by_prefix(self):
        lab = ul.Lab()
        lab.up()
        lab.detach()  # forget it, as if its process had vanished
        ul.cleanup_stale(lab.prefix)
        for proc in lab.procs.values():  # killed by cleanup_stale; reap our zombies
            proc.wait(timeout=10)
        self.assertGone(lab.prefix, lab.workdir)


if __name__ == "__main__":
    unittest.main()

"""The node's life outside failovers: clean stop on SIGTERM, a restarted node that joins the
survivor, connections that really end, and the command line's promises."""
import json
import re
import subprocess
import unittest

from tests.lab.node_case import BINARY, NodeCase, ul


class NodeLifecycleTest(NodeCase):
    def daemon(self, node):
        return self.lab.procs[(node, "daemon")]

    def test_sigterm_stops_cleanly(self):
        self.start_duplex()
        self.lab.stop_node("backup")
        self.assertEqual(self.daemon("backup").wait(10), 0)
        self.assertIn("signal SIGTERM: stopping", self.lab.log_tail("backup", "understudy"))
        # The primary sees the backup go silent and serves alone.
        self.lab.wait_status("primary", mode="simplex", front=True, failovers=1)
        r = self.lab.curl_fetch("/f/100k.bin")
        self.assertEqual((r.status, r.size, r.sha256), (200,) + self.lab.manifest["/f/100k.bin"])

    def test_restarted_primary_rejoins(self):
        """The repaired host comes back with its usual config: it joins the backup that serves
        alone (issue 9) instead of refusing; the backup stays the front. tests/lab/test_rejoin.py
        covers the connections across a rejoin."""
        self.start_duplex()
        self.lab.crash("primary")
        self.wait_survivor("backup")
        self.lab.restart_node("primary")
        p = self.lab.wait_status("primary", timeout=15, mode="duplex", channel_up=True)
        b = self.lab.wait_status("backup", mode="duplex", channel_up=True)
        self.assertEqual((p["role"], p["front"], p["peer"], p["failovers"]),
                         ("primary", False, "alive", 0), p)
        self.assertEqual((b["role"], b["front"], b["peer"], b["failovers"]),
                         ("backup", True, "alive", 1), b)
        self.assertRegex(self.lab.log_tail("backup", "understudy", 200000),
                         rf"mode: simplex -> duplex \(primary rejoined, boot {p['boot_id']}\)")
        self.assertNotRegex(self.lab.log_tail("primary", "understudy", 20000), "refusing to start")
        r = self.lab.curl_fetch("/f/1m.bin")
        self.assertEqual((r.status, r.size, r.sha256), (200,) + self.lab.manifest["/f/1m.bin"])

    def test_connections_end_on_both_nodes(self):
        self.start_duplex()
        for path in ("/f/1k.bin", "/f/1m.bin", "/f/0.bin"):
            r = self.lab.curl_fetch(path)
            self.assertEqual((r.status, r.size, r.sha256), (200,) + self.lab.manifest[path])
        for node in ("primary", "backup"):
            ul.wait_for(lambda n=node: (self.status(n) or {}).get("connections") == 0, 10,
                        f"{node} to close its connections")
            st = self.status(node)
            self.assertEqual(st["message"]["accepted"], 3, st)
            self.assertEqual(st["message"]["aborted"], 0, st)
        # The primary timed each request: server, replication round trip, whole request.
        t = self.status("primary")["timing"]
        self.assertEqual(t["request_us"]["count"], 3, t)
        self.assertEqual(t["server_us"]["count"], 3, t)
        self.assertGreaterEqual(t["replication_us"]["count"], 3, t)
        self.assertGreater(t["packet_us"]["count"], 0, t)
        self.assertLessEqual(t["server_us"]["p50"], t["request_us"]["max"] * 1.1, t)

    def test_status_text_and_keygen(self):
        self.start_duplex()
        cp = self.lab.run_in("backup", [BINARY, "status", "--config", self.lab.config_path("backup")])
        text = cp.stdout.decode()
        self.assertEqual(cp.returncode, 0, text)
        for line in ("role:        backup", "mode:        duplex", "front:       yes",
                     "peer:        alive", "connections: 0", "failovers:   0"):
            self.assertIn(line, text)
        keys = {subprocess.run([BINARY, "keygen"], capture_output=True, check=True).stdout
                for _ in range(2)}
        self.assertEqual(len(keys), 2, "two keys must differ")
        for k in keys:
            self.assertRegex(k.decode(), r"^[0-9a-f]{64}\n$")

    def test_stuck_control_client_does_not_stall_the_node(self):
        self.start_duplex()
        import os
        import socket
        import time
        path = os.path.join(self.lab.node_dir("backup"), "control.sock")
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.connect(path)
        stuck.sendall(b'{"cmd": "sta')  # and never the rest of the line
        t0 = time.monotonic()
        # While it hangs there, the node serves, answers others and keeps its peer (heartbeats).
        r = self.lab.curl_fetch("/f/1m.bin")
        self.assertEqual((r.status, r.size, r.sha256), (200,) + self.lab.manifest["/f/1m.bin"])
        self.assertEqual(self.status("backup")["mode"], "duplex")
        stuck.settimeout(10)
        self.assertEqual(stuck.recv(100), b"", "the daemon closes a control client that stalls")
        self.assertGreater(time.monotonic() - t0, 1.0)
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertEqual((st["mode"], st["failovers"]), ("duplex", 0), st)

    def test_stale_arp_entry_at_the_client(self):
        """A client still sending to the primary's MAC (its ARP entry is stale) is served: the
        primary hands its packets to the front instead of dropping them."""
        self.start_duplex()
        mac = self.lab.run_in("primary", ["cat", "/sys/class/net/eth0/address"]).stdout.decode().strip()
        self.lab.run_in("client", ["ip", "neigh", "replace", ul.ADVERTISED_IP, "lladdr", mac,
                                   "dev", "eth0", "nud", "permanent"], check=True)
        r = self.lab.curl_fetch("/f/1m.bin")
        self.assertEqual((r.status, r.size, r.sha256), (200,) + self.lab.manifest["/f/1m.bin"])
        self.assertGreater(self.status("primary")["packet"]["sent_to_front"], 0)
        self.assertEqual(self.status("primary")["packet"]["dropped_not_front"], 0)

    def test_idle_keepalive_connection_is_closed(self):
        for node in ("primary", "backup"):
            self.lab.write_config(node, limits={"idle_timeout_ms": 1000})
        self.start_duplex()
        script = (
            "import socket, time, json\n"
            "s = socket.create_connection(('198.18.0.100', 80), timeout=15)\n"
            "s.sendall(b'GET /f/1k.bin HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
            "got = b''\n"
            "t = None\n"
            "while True:\n"
            "    b = s.recv(65536)\n"
            "    if not b: break\n"
            "    got += b\n"
            "    if t is None and len(got.partition(b'\\r\\n\\r\\n')[2]) >= 1024: t = time.monotonic()\n"
            "print(json.dumps({'bytes': len(got), 'idle_s': time.monotonic() - t}))\n")
        cp = self.lab.run_in("client", ["/usr/bin/python3", "-c", script], timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        res = json.loads(cp.stdout)
        self.assertGreater(res["bytes"], 1024)
        self.assertGreaterEqual(res["idle_s"], 1.0, "closed only once idle for idle_timeout_ms")
        for node in ("primary", "backup"):
            ul.wait_for(lambda n=node: (self.status(n) or {}).get("connections") == 0, 10,
                        f"{node} to close the idle connection")

    def test_heavy_load_is_not_a_failure(self):
        """bench finding: 64 connections of 1 MiB replies kept both nodes' loops so busy that
        heartbeats waited in queues, each declared the other dead and both served (split brain).
        Replication traffic now counts as life, and queued input is read before a verdict."""
        self.start_duplex()
        cp = self.lab.run_client(["wrk", "-t2", "-c64", "-d4s", ul.ADVERTISED_IP.join(["http://", "/f/1m.bin"])],
                                 timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn(b"requests in", cp.stdout)
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertEqual((st["mode"], st["failovers"], st["peer"]), ("duplex", 0, "alive"), st)

    def test_status_without_a_running_node_fails_clearly(self):
        cp = subprocess.run([BINARY, "status", "--config", self.lab.config_path("primary")],
                            capture_output=True)
        self.assertEqual(cp.returncode, 1)
        self.assertTrue(re.search(rb"no node at .*control\.sock.*is the node running", cp.stderr),
                        cp.stderr)


if __name__ == "__main__":
    unittest.main()

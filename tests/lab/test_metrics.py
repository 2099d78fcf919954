"""Prometheus metrics (issue 12, item 3; docs/METRICS.md): both nodes of a pair serve /metrics on
127.0.0.1:9464 in their namespace. A scrape passes `promtool check metrics`, says duplex on both
nodes, and its counters grow with the requests a client makes; after the primary crashes the
backup's says simplex with one takeover. Bad scrape requests get 400/404/405 and the node serves
on.

Read tests/lab/node_case.py first.
"""
import re
import subprocess

from tests.lab.node_case import NEEDS_ROOT, NodeCase

LISTEN = "127.0.0.1:9464"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$")
REQUESTS = 6
# Sends stdin's bytes to host:port, prints everything the server answers until it closes.
RAW_CLIENT = ("import socket, sys\n"
              "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
              "s.sendall(sys.stdin.buffer.read())\n"
              "while True:\n"
              "    b = s.recv(65536)\n"
              "    if not b:\n"
              "        break\n"
              "    sys.stdout.buffer.write(b)\n")


@NEEDS_ROOT
class MetricsTest(NodeCase):
    config_overrides = {"metrics": {"listen": LISTEN}}

    def http(self, node, args):
        """curl inside ``node``'s namespace: (status, body)."""
        cp = self.lab.run_in(node, ["curl", "-sS", "--max-time", "5", "-o", "-",
                                    "-w", "\n%{http_code}"] + list(args), timeout=15)
        self.assertEqual(cp.returncode, 0, cp.stderr.decode(errors="replace"))
        body, _, code = cp.stdout.decode().rpartition("\n")
        return int(code), body

    def scrape(self, node):
        """GET /metrics on ``node``; checked by promtool; returns {"name{labels}": value}."""
        code, body = self.http(node, [f"http://{LISTEN}/metrics"])
        self.assertEqual(code, 200, body)
        cp = subprocess.run(["promtool", "check", "metrics"], input=body.encode(),
                            capture_output=True, timeout=30)
        self.assertEqual(cp.returncode, 0,
                         f"promtool on {node}'s metrics: {cp.stdout!r} {cp.stderr!r}")
        samples = {}
        for line in body.splitlines():
            if not line or line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            self.assertIsNotNone(m, line)
            samples[m.group(1)] = float(m.group(2))
        return samples

    def assert_mode(self, samples, mode):
        got = {m: samples[f'understudy_mode{{mode="{m}"}}'] for m in ("starting", "duplex", "simplex")}
        self.assertEqual(got, {m: 1.0 if m == mode else 0.0 for m in got})

    def test_scrape_duplex_counts_and_failover(self):
        self.start_duplex()
        before = {n: self.scrape(n) for n in ("primary", "backup")}
        for n in ("primary", "backup"):
            self.assert_mode(before[n], "duplex")
            self.assertEqual(before[n][f'understudy_role{{role="{n}"}}'], 1.0)
        self.assertEqual(before["backup"]["understudy_front"], 1.0)
        self.assertEqual(before["primary"]["understudy_front"], 0.0)

        for _ in range(REQUESTS):
            r = self.lab.curl_fetch("/f/1k.bin")
            self.assertEqual((r.rc, r.status), (0, 200), r)
        after = {n: self.scrape(n) for n in ("primary", "backup")}

        def grew(node, key):
            return after[node][key] - before[node].get(key, 0.0)

        # The primary serves every request; the backup (the front) receives every client packet,
        # and relays them to the primary.
        self.assertGreaterEqual(grew("primary", "understudy_requests_total"), REQUESTS)
        self.assertGreaterEqual(grew("primary", "understudy_replies_total"), REQUESTS)
        self.assertGreaterEqual(grew("primary", "understudy_connections_accepted_total"), REQUESTS)
        self.assertGreaterEqual(grew("primary", 'understudy_relayed_bytes_total{direction="reply"}'),
                                REQUESTS * 1024)
        self.assertGreaterEqual(grew("backup", 'understudy_packets_total{path="from_client"}'),
                                REQUESTS * 3)  # at least SYN, request and FIN of each
        self.assertGreaterEqual(grew("backup", 'understudy_packets_total{path="relayed"}'),
                                REQUESTS * 3)
        # Each reply waited for the backup's acknowledgement once.
        self.assertGreaterEqual(grew("primary", "understudy_replication_seconds_count"), REQUESTS)
        self.assertGreaterEqual(grew("primary", "understudy_request_seconds_count"), REQUESTS)
        for n in ("primary", "backup"):
            self.assertEqual(after[n]['understudy_failovers_total{kind="takeover"}'], 0.0)
            self.assertEqual(after[n]['understudy_failovers_total{kind="peer_lost"}'], 0.0)

        self.lab.crash("primary")
        self.wait_survivor("backup")
        alone = self.scrape("backup")
        self.assert_mode(alone, "simplex")
        self.assertEqual(alone['understudy_failovers_total{kind="takeover"}'], 1.0)
        self.assertEqual(alone['understudy_failovers_total{kind="peer_lost"}'], 0.0)
        self.assertEqual(alone["understudy_front"], 1.0)
        self.assertEqual(alone["understudy_peer_alive"], 0.0)
        self.assertEqual(alone["understudy_replication_lag_bytes"], 0.0)

    def test_bad_scrapes_answered_and_node_serves_on(self):
        self.start_duplex()
        # Not HTTP at all, and a head http-parser refuses: 400.
        for raw in (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64,
                    b"GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
            host, port = LISTEN.split(":")
            cp = self.lab.run_in("primary", ["python3", "-c", RAW_CLIENT, host, port],
                                 input=raw, timeout=15)
            self.assertTrue(cp.stdout.startswith(b"HTTP/1.1 400 Bad Request\r\n"),
                            (raw, cp.stdout, cp.stderr))
        self.assertEqual(self.http("primary", [f"http://{LISTEN}/"])[0], 404)
        code, _ = self.http("primary", ["-X", "POST", "--data", "x", f"http://{LISTEN}/metrics"])
        self.assertEqual(code, 405)
        self.assertEqual(self.http("primary", ["-I", f"http://{LISTEN}/metrics"])[0], 200)
        # The node is up, still duplex, and the next scrape is whole.
        self.assertTrue(self.lab.daemon_pids("primary"))
        self.assertEqual(self.status("primary")["mode"], "duplex")
        self.assert_mode(self.scrape("primary"), "duplex")
        r = self.lab.curl_fetch("/f/1k.bin")
        self.assertEqual((r.rc, r.status), (0, 200), r)

"""Guards against two overload/partition hazards, with the real daemons in the lab:

* split brain: the peer traffic (heartbeats, relayed packets, replication channel) between the two
  nodes is cut while both still reach the client, so each declares the other dead and both serve
  alone; once the peers hear each other again the backup fail-stops (exit code 4) and the primary
  announces the advertised address again (src/node/mode_machine.cpp, ModeMachine::on_heartbeat).
* the backup's request cache (limits.request_cache_bytes): when the unanswered request bytes it
  holds reach the limit it stops reading client sockets ("request cache full ... pausing reads")
  and resumes once replies let it drop cached requests (src/message/message_layer.cpp). `status`
  has no counter for this, so the test reads the log line.
"""
import json
import re
import time
import tomllib

from tests.lab.node_case import NodeCase, ul

DEFAULT_PEER_PORT = 7400  # docs/CONFIG.md, peer.port
STREAM = ["/f/1k.bin", "/f/10k.bin", "/f/100k.bin", "/f/5k.bin", "/f/1m.bin"]

# One client connection, one upload: POST /echo of a body file, answered with the body's length and
# sha256 (understudy_lab/echo_backend.py). With slow_ms > 0 a GET /echo/slow?ms=<slow_ms> goes first in the
# same write (pipelined): the POST is then complete but unanswered until the GET's reply is out, so
# the backup must keep its bytes cached meanwhile. Prints {"get": {...} or null, "post": {...}};
# a reply that does not come within 30 s is an exception (exit status 1).
UPLOAD_CLIENT = r"""
import json, socket, sys

host, slow_ms, body_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(body_path, "rb") as f:
    body = f.read()
s = socket.create_connection((host, 80), timeout=30)
get = f"GET /echo/slow?ms={slow_ms} HTTP/1.1\r\nHost: lab\r\n\r\n".encode() if slow_ms else b""
s.sendall(get
          + (f"POST /echo HTTP/1.1\r\nHost: lab\r\nContent-Type: application/octet-stream\r\n"
             f"Content-Length: {len(body)}\r\n\r\n").encode()
          + body)
buf = b""


def more():
    global buf
    chunk = s.recv(65536)
    if not chunk:
        raise EOFError(f"connection closed by the server; {len(buf)} bytes pending")
    buf += chunk


def response():
    global buf
    while b"\r\n\r\n" not in buf:
        more()
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(buf) < length:
        more()
    body, buf = buf[:length], buf[length:]
    return {"status": int(lines[0].split()[1]), "body": json.loads(body)}


out = {"get": response() if slow_ms else None}
out["post"] = response()
s.close()
print(json.dumps(out))
"""


class GuardsTest(NodeCase):
    # ---- helpers
    def daemon(self, node):
        return self.lab.procs[(node, "daemon")]

    def peer_port(self):
        with open(self.lab.config_path("primary"), "rb") as f:
            return tomllib.load(f).get("peer", {}).get("port", DEFAULT_PEER_PORT)

    def mac(self, node):
        cp = self.lab.run_in(node, ["cat", "/sys/class/net/eth0/address"], check=True)
        return cp.stdout.decode().strip()

    def client_neigh(self):
        """The client's ARP entry for the advertised address: (lladdr, state) or None."""
        cp = self.lab.run_in("client", ["ip", "-j", "neigh", "show", ul.ADVERTISED_IP, "dev", "eth0"],
                             check=True)
        entries = json.loads(cp.stdout.decode() or "[]")
        if not entries:
            return None
        return entries[0].get("lladdr"), entries[0].get("state")

    def garps(self, node):
        return ((self.status(node) or {}).get("arp") or {}).get("gratuitous")

    def cut_peer_traffic(self):
        """Drop every packet between the two nodes to or from the peer port (UDP heartbeats and
        relayed packets, the TCP replication channel) on the lab bridge; client traffic passes."""
        port = self.peer_port()
        rules = []
        for a, b in (("primary", "backup"), ("backup", "primary")):
            for field in ("sport", "dport"):
                rules.append(self.lab.drop_all(a, b, match=f"meta l4proto {{ tcp, udp }} th {field} {port}"))
        return rules

    def assert_file(self, path):
        r = self.lab.curl_fetch(path)
        self.assertEqual((r.rc, r.status, r.size, r.sha256), (0, 200) + self.lab.manifest[path], r)

    def split(self):
        """Cut the peer traffic and wait until both nodes serve alone and have done announcing the
        address; returns the nft rules."""
        rules = self.cut_peer_traffic()
        for node in ("primary", "backup"):
            self.lab.wait_status(node, mode="simplex", front=True, failovers=1, peer="dead")
        # Split brain: both serve alone. Each announced the address (1 + 3 repeats, up to 500 ms
        # later; the backup also announced 4 times on entering duplex): wait until both are done.
        ul.wait_for(lambda: self.garps("primary") == 4 and self.garps("backup") == 8, 5,
                    "both nodes' gratuitous ARPs after the split",
                    details=lambda: f"primary {self.garps('primary')}, backup {self.garps('backup')}")
        self.assertGreater(sum(self.lab.dropped(r) for r in rules), 0, "the rules cut peer traffic")
        return rules

    def point_client_at(self, node):
        """Make the client's ARP entry name ``node``, as if its announcement had come last. Stale:
        the client's next use probes that MAC by unicast, which only ``node`` answers."""
        self.lab.run_in("client", ["ip", "neigh", "replace", ul.ADVERTISED_IP, "lladdr", self.mac(node),
                                   "dev", "eth0", "nud", "stale"], check=True)

    def heal(self):
        """Heal the partition; wait until the backup has fail-stopped, the primary has announced
        the address again and the client's ARP entry names the primary. Returns the monotonic time
        the backup was seen to exit."""
        primary_mac, backup_mac = self.mac("primary"), self.mac("backup")
        # Both directions at once (one nft transaction; the chain holds only these rules), so the
        # test favours neither node in the race of the first heartbeats.
        self.lab.clear_loss()
        # The backup hears the primary's simplex heartbeats and stops itself (exit code 4).
        self.assertEqual(self.daemon("backup").wait(10), 4, self.lab.log_tail("backup", "understudy"))
        stopped = time.monotonic()
        backup_log = self.lab.log_tail("backup", "understudy", 20000)
        self.assertRegex(backup_log, r"mode: simplex -> stopped \(split brain: primary .* serves alone too")
        self.assertIn("node: fail-stop: split brain", backup_log)
        # The primary hears the backup's simplex heartbeat and announces the address again.
        ul.wait_for(lambda: "mode: split brain: backup" in self.lab.log_tail("primary", "understudy", 20000),
                    5, "the primary to log the split brain and announce the address again",
                    details=lambda: "\n--- primary log:\n" + self.lab.log_tail("primary", "understudy")
                                    + "\n--- backup log:\n" + self.lab.log_tail("backup", "understudy"))
        ul.wait_for(lambda: (self.client_neigh() or (None,))[0] == primary_mac, 5,
                    "the client's ARP entry to name the primary",
                    details=lambda: f"client entry {self.client_neigh()}, primary {primary_mac}, "
                                    f"backup {backup_mac}")
        return stopped

    def packet_counter(self, node, name):
        return self.status(node)["packet"][name]

    def message_counter(self, node, name):
        return self.status(node)["message"][name]

    def assert_primary_serves_alone(self):
        st = self.lab.wait_status("primary", mode="simplex", front=True, failovers=1)
        self.assertGreater(st["arp"]["gratuitous"], 4, st)
        return st

    # ---- split brain
    def test_split_brain_resolved(self):
        self.start_duplex()
        self.assert_file("/f/100k.bin")
        # In duplex the backup is the front: the client learned the address at the backup's MAC.
        self.assertEqual(self.client_neigh()[0], self.mac("backup"))

        self.split()
        # Client traffic still passes: whichever node the client's ARP entry names answers it.
        self.assert_file("/f/1m.bin")
        # After the resolution only the primary's new announcement can bring the client back.
        self.point_client_at("backup")
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertEqual((st["mode"], st["front"], st["failovers"]), ("simplex", True, 1), st)

        self.heal()
        self.assert_primary_serves_alone()
        self.assert_file("/f/1m.bin")
        self.assert_file("/f/100k.bin")
        st = self.status("primary")
        self.assertEqual((st["mode"], st["front"], st["failovers"]), ("simplex", True, 1), st)

    def test_split_brain_keeps_the_primarys_connections(self):
        """Connections the primary serves during the split, one opened before it (in duplex) and
        one during it, go on across the heal on the same connection, every reply byte-exact."""
        self.start_duplex()
        # Opened in duplex (through the backup, the front), one reply, then idle at its gate.
        before = self.stream("before", STREAM, gate=True, interval_ms=20)
        self.wait_replies(before, 1)
        self.split()
        self.point_client_at("primary")
        accepted = {n: self.message_counter(n, "accepted") for n in ("primary", "backup")}
        backup_requests = self.message_counter("backup", "requests")
        self.open_gate(before)
        during = self.stream("during", STREAM, interval_ms=20)
        for h in (before, during):
            self.wait_replies(h, 10)
        # Served by the primary alone: the backup saw neither the requests nor the new connection.
        self.assertEqual(self.message_counter("primary", "accepted"), accepted["primary"] + 1)
        self.assertEqual(self.message_counter("backup", "accepted"), accepted["backup"])
        self.assertEqual(self.message_counter("backup", "requests"), backup_requests)

        marks = {h["name"]: self.replies(h) for h in (before, during)}
        self.heal()
        for h in (before, during):
            self.wait_replies(h, marks[h["name"]] + 20)
        st = self.assert_primary_serves_alone()
        for h in (before, during):
            results = self.stream_results(h)
            self.assert_one_connection(h, results)
            print(f"{h['name']}: {len(results)} replies byte-exact on one connection, "
                  f"{marks[h['name']]} before the heal", flush=True)
        st = self.status("primary")
        self.assertEqual((st["mode"], st["front"], st["failovers"]), ("simplex", True, 1), st)
        self.assertEqual(st["message"]["aborted"], 0, st)
        self.assertEqual(st["packet"].get("resets_unknown_flow", 0), 0, st)

    def ended_within(self, h, timeout):
        """Wait until stream ``h`` has ended by itself; returns the monotonic time it was seen."""
        ul.wait_for(lambda: h["p"].poll() is not None, timeout, f"{h['name']} to end")
        return time.monotonic()

    def test_split_brain_backups_connections(self):
        """What the clients of the node that stops get: the primary does not know the backup's
        connections from the split, and knows the older ones only as they were before it."""
        self.start_duplex()
        # Opened in duplex; one reply, then requests every 20 ms through the backup in the split.
        old = self.stream("old", STREAM, gate=True, interval_ms=20, timeout=5)
        self.wait_replies(old, 1)
        self.split()
        self.point_client_at("backup")
        # Opened in the split through the backup: one idle after a reply, one waiting for a slow
        # reply when the backup stops (it sent its whole request: it has nothing more to send).
        idle = self.stream("idle", STREAM, gate=True)
        self.wait_replies(idle, 1)
        requests = self.message_counter("backup", "requests")
        waiting = self.stream("waiting", ["/f/1k.bin", "/echo/slow?ms=60000"], timeout=8)
        ul.wait_for(lambda: self.message_counter("backup", "requests") == requests + 2, 10,
                    "the backup to read the waiting client's second (slow) request")
        self.assertEqual(self.replies(waiting), 1)
        self.open_gate(old)
        self.wait_replies(old, 10)
        self.assertEqual(self.packet_counter("primary", "resets_unknown_flow"), 0)

        self.heal()
        at_heal = self.replies(old)  # the backup, the only node that served it, has stopped
        # The idle one's next request reaches the primary, which knows no such flow: a RST at once.
        gate = time.monotonic()
        self.open_gate(idle)
        ended = self.ended_within(idle, 5)
        res, _ = self.stream_outcome(idle, stop=False)
        self.assertRegex(res["error"] or "", r"^ConnectionResetError: \[Errno 104\] Connection reset "
                                             r"by peer \(after 1 replies\)$", res)
        self.assertLess(ended - gate, 1.0, "the reset comes at once")
        self.assertEqual(self.packet_counter("primary", "resets_unknown_flow"), 1)
        print(f"\nidle: reset {ended - gate:.3f} s after its next request", flush=True)
        # The older one: the primary knows it only at its position before the split, so its next
        # request lies beyond what the primary's kernel has and is never answered; nothing is
        # reset (the flow is known) and the client hears nothing until its own timeout (5 s).
        res, _ = self.stream_outcome(old, stop=False, timeout=30)
        self.assertEqual((res["error"], len(res["results"])),
                         (f"TimeoutError: timed out (after {at_heal} replies)", at_heal), res)
        # Those ACKs are of bytes the primary never sent: dropped (RFC 5961 5.2).
        self.assertGreater(self.packet_counter("primary", "acks_beyond_sent"), 0,
                           "the client acknowledged bytes only the backup had sent")
        # The waiting one sends nothing, so nothing answers it: silence until its timeout (8 s);
        # its FIN on close then reaches the primary, which resets it as an unknown flow.
        res, _ = self.stream_outcome(waiting, stop=False, timeout=30)
        self.assertEqual((res["error"], [r["path"] for r in res["results"]]),
                         ("TimeoutError: timed out (after 1 replies)", ["/f/1k.bin"]), res)
        ul.wait_for(lambda: self.packet_counter("primary", "resets_unknown_flow") == 2, 5,
                    "the primary to reset the waiting client's FIN",
                    details=lambda: json.dumps(self.status("primary")["packet"]))
        st = self.status("primary")
        self.assertEqual((st["mode"], st["front"], st["failovers"]), ("simplex", True, 1), st)
        self.assertEqual(st["packet"]["dropped_unknown_flow"], 2, st)
        self.assert_file("/f/1m.bin")

    # ---- request cache
    CACHE_LIMIT = 256 << 10   # limits.request_cache_bytes on the backup (the config accepts >= 1)
    UPLOAD = 200 << 10        # each upload is smaller than the limit; two together are larger
    HELD = 2                  # uploads pipelined behind a slow GET: they fill the cache
    PLAIN = 3                 # plain uploads started while the cache is full
    SLOW_MS = 4000            # how long the slow GET keeps each held upload unanswered
    READ_CHUNK = 64 << 10     # the message layer reads at most this much per read()

    def test_request_cache_bound_pauses_backup_reads(self):
        self.lab.write_config("backup", limits={"request_cache_bytes": self.CACHE_LIMIT})
        self.start_duplex()
        bodies = [self.lab.make_body(self.UPLOAD, seed=f"upload{i}".encode())
                  for i in range(self.HELD + self.PLAIN)]
        pause = re.compile(r"message: request cache full \((\d+) bytes\): pausing reads of")

        def paused():
            return pause.findall(self.lab.log_tail("backup", "understudy", 200000))

        def backup_requests():
            return ((self.status("backup") or {}).get("message") or {}).get("requests", 0)

        def upload(i, slow_ms):
            return self.spawn_client(["/usr/bin/python3", "-c", UPLOAD_CLIENT, ul.ADVERTISED_IP,
                                      str(slow_ms), bodies[i][0]])

        # The first held upload fits in the cache (its GET and POST are complete there, counted as
        # requests); the second one fills it: the backup pauses reading it.
        clients = [upload(0, self.SLOW_MS)]
        ul.wait_for(lambda: paused() or backup_requests() >= 2, 10, "the backup to cache upload 0",
                    details=lambda: f"backup requests {backup_requests()}")
        clients.append(upload(1, self.SLOW_MS))
        ul.wait_for(paused, 10, "the backup to log 'request cache full'",
                    details=lambda: f"backup requests {backup_requests()}")
        for held in map(int, paused()):
            self.assertGreaterEqual(held, self.CACHE_LIMIT)
            # One connection may finish the request it is in past the limit (else partial requests
            # alone could fill the cache for good): at most one upload and one read over.
            self.assertLess(held, self.CACHE_LIMIT + self.UPLOAD + self.READ_CHUNK + 4096,
                            "the cache overshoots by at most one request in progress")
        # More uploads while the cache is full: the backup must take them in once replies to the
        # held ones drain the cache (each fits in the limit on its own). Each is larger than what a
        # client may send before the backup holds it (the primary's ACKs wait for the backup's), so
        # its reply comes only if the backup reads it.
        clients += [upload(i, 0) for i in range(self.HELD, self.HELD + self.PLAIN)]

        for i, (p, (_, sha)) in enumerate(zip(clients, bodies)):
            rc, out, err = self.finish(p, timeout=60)
            self.assertEqual(rc, 0, f"upload {i} ({'held' if i < self.HELD else 'plain'}) got no reply: "
                                    f"{out!r} {err.decode(errors='replace')[-300:]}")
            res = json.loads(out)
            if i < self.HELD:
                self.assertEqual(res["get"]["status"], 200, res)
                self.assertEqual(res["get"]["body"]["slept_ms"], self.SLOW_MS, res)
            self.assertEqual(res["post"]["status"], 200, res)
            self.assertEqual(res["post"]["body"], {"length": self.UPLOAD, "sha256": sha, "node": "primary"},
                             f"upload {i}")
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertEqual((st["mode"], st["failovers"], st["peer"]), ("duplex", 0, "alive"), st)
            self.assertEqual(st["message"]["accepted"], self.HELD + self.PLAIN, st)
            self.assertEqual(st["message"]["aborted"], 0, st)

"""The paper's Table 1: one packet lost on each hop, in each direction, while both nodes are up.

Every row is recovered by TCP alone (plus the backup relaying retransmissions): the client gets
every byte, byte-exact, the loss really happened (the nft rule dropped exactly one packet), and
both nodes stay in duplex with no failover.

Duplex paths in the lab (bridge ports v-<node>):
  client data / client ack   client -> backup            (v-client  -> v-backup)
  relayed client packets     backup -> primary, UDP 7400 (v-backup  -> v-primary)
  server data / server ack   primary -> client           (v-primary -> v-client)

Packet kinds are told apart with nft expressions that work in the lab's bridge table:
  data:      meta length > 1000            (full-size segments; client MSS 1360)
  pure ACK:  ip length < 100, TCP flags exactly ACK (no SYN/FIN/RST/PSH)
  relayed pure ACK: udp dport 7400, ip length 90..150 (IP 20 + UDP 8 + frame 16+16 + a 40..60
             byte TCP/IP packet); heartbeats are 70 bytes, relayed data > 1000.
A "skip N" prefix (``numgen inc mod 4000000000 >= N``: its own counter, evaluated only for
matching packets) makes drop_once drop the (N+1)-th matching packet, so the lost ACK is one in the
middle of the transfer, not the handshake's.
"""
import json
import unittest

from tests.lab.node_case import NodeCase

BIG = "/f/1m.bin"
POST_SIZE = 100 << 10

PURE_ACK = "tcp flags & (syn|ack|fin|rst|psh) == ack ip length < 100"
RELAYED_PURE_ACK = "udp dport 7400 ip length > 90 ip length < 150"
RELAYED_DATA = "udp dport 7400 meta length > 1000"
DATA = "meta length > 1000"


def skip_first(n):
    """nft expression true from the (n+1)-th matching packet on (its own counter)."""
    return f"numgen inc mod 4000000000 >= {n}"


class Table1LossTest(NodeCase):
    # ---- helpers
    def post_echo(self, size=POST_SIZE, seed=b"t1"):
        path, sha = self.lab.make_body(size, seed=seed)
        # No "Expect: 100-continue": the body follows the headers at once, like most clients.
        r = self.lab.curl_fetch("/echo", data_file=path, keep_body=True, max_time=30,
                                extra=("-H", "Expect:"))
        self.assertEqual((r.rc, r.status), (0, 200), r.stderr)
        reply = json.loads(r.body)
        self.assertEqual(reply["length"], size, reply)
        self.assertEqual(reply["sha256"], sha, reply)
        self.assertEqual(reply["node"], "primary", reply)  # duplex: the primary serves
        return reply

    def get_big(self, path=BIG):
        size, sha = self.lab.manifest[path]
        r = self.lab.curl_fetch(path, max_time=30)
        self.assertEqual((r.rc, r.status, r.size, r.sha256), (0, 200, size, sha), r.stderr)
        return r

    def retrans(self, node):
        """TcpRetransSegs of the node's network namespace (the kernel's own count)."""
        cp = self.lab.run_in(node, ["cat", "/proc/net/snmp"], check=True)
        lines = [l.split() for l in cp.stdout.decode().splitlines() if l.startswith("Tcp:")]
        return int(lines[1][lines[0].index("RetransSegs")])

    def assert_dropped_once(self, rule):
        self.assertEqual(self.lab.dropped(rule), 1, f"rule {rule.expr!r} did not drop exactly one packet")

    def assert_still_duplex(self):
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertIsNotNone(st, f"{node} gives no status")
            self.assertEqual((st["mode"], st["failovers"]), ("duplex", 0), f"{node}: {st}")
            self.assertEqual(st["peer"], "alive", f"{node}: {st}")
        self.assertTrue(self.status("backup")["front"])
        self.assertFalse(self.status("primary")["front"])

    # ---- row 1: client data, client -> backup
    def test_client_data_client_to_backup_lost(self):
        self.start_duplex()
        rule = self.lab.drop_once("client", "backup", match=DATA)
        r0 = self.retrans("client")
        self.post_echo()
        self.assert_dropped_once(rule)
        self.assertGreater(self.retrans("client"), r0, "the client never retransmitted")
        self.assert_still_duplex()

    # ---- row 2: client data, backup -> primary (the relay datagram carrying it)
    def test_client_data_backup_to_primary_lost(self):
        self.start_duplex()
        rule = self.lab.drop_once("backup", "primary", match=RELAYED_DATA)
        before = self.status("backup")["packet"]["relayed"]
        r0 = self.retrans("client")
        self.post_echo()
        self.assert_dropped_once(rule)
        self.assertGreater(self.retrans("client"), r0, "the client never retransmitted")
        # The backup relayed the client's retransmission too (it relays duplicates).
        self.assertGreater(self.status("backup")["packet"]["relayed"], before)
        self.assert_still_duplex()

    # ---- row 3: server ack, primary -> client (a pure ACK of the POST body)
    def test_server_ack_primary_to_client_lost(self):
        self.start_duplex()
        # Skip the first 3 pure ACKs: the dropped one acknowledges body segments.
        rule = self.lab.drop_once("primary", "client", match=f"tcp sport 80 {PURE_ACK} {skip_first(3)}")
        self.post_echo()
        self.assert_dropped_once(rule)
        self.assert_still_duplex()

    def test_first_server_ack_lost_small_post(self):
        """The primary's first pure ACK after the handshake lost, on a one-segment POST body:
        the client learns that its request arrived only from a later ACK or the reply itself."""
        self.start_duplex()
        rule = self.lab.drop_once("primary", "client", match=f"tcp sport 80 {PURE_ACK}")
        self.post_echo(size=1000, seed=b"t1s")
        self.post_echo(size=POST_SIZE, seed=b"t1b")
        self.assert_dropped_once(rule)
        self.assert_still_duplex()

    # ---- row 4: server data, primary -> client
    def test_server_data_primary_to_client_lost(self):
        self.start_duplex()
        rule = self.lab.drop_once("primary", "client", match=DATA)
        r0 = self.retrans("primary")
        self.get_big()
        self.assert_dropped_once(rule)
        self.assertGreater(self.retrans("primary"), r0, "the primary never retransmitted")
        self.assert_still_duplex()

    # ---- row 5: client ack, client -> backup (during a 1 MiB GET)
    def test_client_ack_client_to_backup_lost(self):
        self.start_duplex()
        # The first pure ACK is the handshake's; skip 10 so the lost one acknowledges reply data.
        rule = self.lab.drop_once("client", "backup", match=f"tcp dport 80 {PURE_ACK} {skip_first(10)}")
        self.get_big()
        self.assert_dropped_once(rule)
        self.assert_still_duplex()

    def test_client_ack_of_small_reply_lost(self):
        """The client's first pure ACK after the handshake's lost, on a 1 KiB reply (it acknowledges
        reply bytes: the primary retransmits them, or a later ACK covers them, before the close)."""
        self.start_duplex()
        rule = self.lab.drop_once("client", "backup", match=f"tcp dport 80 {PURE_ACK} {skip_first(1)}")
        size, sha = self.lab.manifest["/f/1k.bin"]
        r = self.lab.curl_fetch("/f/1k.bin", max_time=30)
        self.assertEqual((r.rc, r.status, r.size, r.sha256), (0, 200, size, sha), r.stderr)
        self.get_big()
        self.assert_dropped_once(rule)
        self.assert_still_duplex()

    # ---- row 6: client ack, backup -> primary (its relay datagram, during a 1 MiB GET)
    def test_client_ack_backup_to_primary_lost(self):
        self.start_duplex()
        rule = self.lab.drop_once("backup", "primary", match=f"{RELAYED_PURE_ACK} {skip_first(10)}")
        self.get_big()
        self.assert_dropped_once(rule)
        self.assert_still_duplex()

    # ---- random loss on every port
    def test_random_loss_everywhere(self):
        self.start_duplex()
        rule = self.lab.drop_random(3)
        for i in range(3):
            with self.subTest(round=i):
                self.get_big()
                self.post_echo(seed=f"r{i}".encode())
                self.get_big("/f/100k.bin")
        self.assertGreater(self.lab.dropped(rule), 0)
        print(f"\nrandom 3% loss: {self.lab.dropped(rule)} packets dropped", flush=True)
        self.assert_still_duplex()


if __name__ == "__main__":
    unittest.main()

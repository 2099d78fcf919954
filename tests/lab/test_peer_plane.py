"""A host on the LAN against the peer plane (issue 10, item 5), with the real daemons in the lab.

The client's namespace doubles as that host: it shares the lab's bridge with both nodes. It
records the nodes' peer datagrams (tcpdump on the bridge port, in the lan namespace) and sends
them again with scapy, spoofing a node's address:

* a reflected heartbeat: the primary's own datagrams, sent back to it as if from the backup. Each
  direction has its own key (src/peer/datagram.cpp), so they fail authentication; before that
  split, a reflected heartbeat passed for the backup's and could force a failover.
* replayed relays: the backup's datagrams to the primary (heartbeats and relayed client packets),
  played back. The heartbeats are older than the newest (ReplayedHeartbeat) and the relays were
  seen already (the replay window, ReplayedPacket): none reaches the packet layer.

Each test asserts that the primary counted every injected datagram as rejected (status
peer_channel.rejected_datagrams, exactly), that a keep-alive stream running throughout got every
reply byte-exact on one connection, and that both nodes are still in duplex with no failover.
"""
import os
import subprocess

from tests.lab.node_case import NodeCase, ul

PEER_PORT = 7400  # docs/CONFIG.md, peer.port (the lab's configs keep the default)
CAPTURED = 40
STREAM = ["/f/1k.bin", "/f/10k.bin", "/f/100k.bin"]

# Runs in the client's namespace: sends every IPv4/UDP datagram of a pcap file once, either as
# recorded ("replay") or back to its sender ("reflect": source and destination swapped). Prints
# how many it sent.
SENDER = r"""
import sys
from scapy.all import IP, UDP, rdpcap, send

mode, path = sys.argv[1], sys.argv[2]
out = []
for frame in rdpcap(path):
    ip = frame[IP]
    udp = ip[UDP]
    payload = bytes(udp.payload)
    if mode == "reflect":
        out.append(IP(src=ip.dst, dst=ip.src) / UDP(sport=udp.dport, dport=udp.sport) / payload)
    else:
        out.append(IP(src=ip.src, dst=ip.dst) / UDP(sport=udp.sport, dport=udp.dport) / payload)
send(out, verbose=False)
print(len(out))
"""


class PeerPlaneTest(NodeCase):
    def capture(self, sender, receiver):
        """Record the next CAPTURED datagrams ``sender`` sends ``receiver`` on the peer port; returns
        the pcap path (tcpdump exits by itself once it has them)."""
        path = os.path.join(self.lab.workdir, f"{sender}-to-{receiver}.pcap")
        filt = (f"udp and src host {ul.NODE_IPS[sender]} and dst host {ul.NODE_IPS[receiver]} "
                f"and dst port {PEER_PORT}")
        cp = subprocess.run(["ip", "netns", "exec", self.lab.ns("lan"), "tcpdump", "-i",
                             f"v-{sender}", "-w", path, "-c", str(CAPTURED), "-U", filt],
                            capture_output=True, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr.decode(errors="replace"))
        return path

    def send(self, mode, path):
        cp = self.lab.run_in("client", ["/usr/bin/python3", "-c", SENDER, mode, path], timeout=120)
        self.assertEqual(cp.returncode, 0, cp.stderr.decode(errors="replace"))
        return int(cp.stdout.decode().strip())

    def rejected(self, node):
        return self.status(node)["peer_channel"]["rejected_datagrams"]

    def attack(self, sender, receiver, mode):
        """Capture, then inject while a keep-alive stream runs; check what the issue asks."""
        self.start_duplex()
        h = self.stream("stream", STREAM, interval_ms=20)
        self.wait_replies(h, 5)
        path = self.capture(sender, receiver)
        before = self.rejected("primary")
        sent = self.send(mode, path)
        self.assertEqual(sent, CAPTURED)
        ul.wait_for(lambda: self.rejected("primary") - before >= sent, 10,
                    f"the primary to reject all {sent} injected datagrams",
                    details=lambda: f"rejected {self.rejected('primary') - before}")
        served = self.replies(h)
        self.wait_replies(h, served + 10)
        results = self.stream_results(h)
        self.assert_one_connection(h, results)
        self.assertEqual(self.rejected("primary") - before, sent, "each injected datagram once")
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertEqual((st["mode"], st["failovers"]), ("duplex", 0), f"{node}: {st}")
        print(f"{mode}: {sent} datagrams injected, {self.rejected('primary') - before} rejected, "
              f"{len(results)} replies byte-exact, failovers 0")

    def test_reflected_heartbeat_is_rejected(self):
        self.attack("primary", "backup", "reflect")

    def test_replayed_relays_are_rejected(self):
        self.attack("backup", "primary", "replay")

"""Spoofing clients against the packet layer (issue 10, items 2 and 3; docs/ARCHITECTURE.md,
"RFC 5961" and "Flow table"). Read tests/lab/node_case.py first.

BlindInjectionTest: a raw-socket injector in the client namespace knows a live keep-alive
connection's 4-tuple and sends what a blind attacker would (a RST at a guessed in-window seq, a
SYN with another ISN, an ACK far beyond what was sent): the connection then serves its next
requests byte-exact, on the same connection, with no failover, and the counters show each refusal.

SynFloodTest: a spoofed-source SYN flood at full speed (sources cycled through 198.18.128.0/17,
inside 198.18.0.0/15 and off the lab's subnet) while a real client opens new connections with a
request each: all succeed byte-exact, no failover, memory bounded, and the counters show the
half-open flows the flood took given up for newer ones.

Each test prints one line "hostile-packets: ..." with the numbers the closing note needs.
"""
import json
import subprocess
import unittest

from tests.lab.client_scripts import RAW_IPV4
from tests.lab.node_case import NodeCase, ul

ADV = ul.ADVERTISED_IP
CLIENT_IP = ul.NODE_IPS["client"]

# ---------------------------------------------------------------------------------------------
# Scripts run in the client namespace (python3 -c SCRIPT ARGS...).

# Raw IPv4+TCP (IPPROTO_RAW implies IP_HDRINCL: we build the IP header ourselves).
RAW_TCP = RAW_IPV4 + r"""

RAW = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

def tcp_packet(src, sport, dst, dport, seq, ack, flags, window=64240, opts=b"", payload=b""):
    off = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xffffffff, ack & 0xffffffff, off << 4,
                      flags, window, 0, 0) + opts + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    return ip_header(src, dst, 6, len(tcp), 0) + tcp

def send_tcp(dst, *args, **kw):
    RAW.sendto(tcp_packet(*args, **kw), (dst, 0))
"""

# One keep-alive connection driven by commands on stdin, one JSON line out per command:
#   get PATH   a request on the connection; status, size, sha256 of the body (or the error)
#   rst        a RST at the client's next seq + 1000: in the window, not exact
#   rst_far    a RST 2^30 past it: outside any window
#   syn        a SYN with another ISN from the connection's address and port
#   ack        an ACK 2^30 beyond the server's next seq
# An AF_PACKET socket watches the connection, so the injector knows its numbers as an on-path
# observer would; a blind attacker guesses them, which only makes its odds worse.
INJECTOR = RAW_TCP + r"""
import hashlib
adv, port = sys.argv[1], int(sys.argv[2])
# ETH_P_ALL: a tap for one protocol does not see outgoing frames.
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sniff.setblocking(False)
conn = socket.create_connection((adv, port), timeout=10)
me, my_port = conn.getsockname()
nums = {"srv": None, "cli": None}

def later(a, b):
    return b is None or 0 < ((a - b) & 0xffffffff) < (1 << 31)

def watch():
    while True:
        try:
            b = sniff.recv(65535)
        except BlockingIOError:
            return
        ip = b[14:]
        if b[12:14] != b"\x08\x00" or len(ip) < 40 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:total]
        sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
        end = (seq + len(tcp) - (off >> 4) * 4 + (1 if flags & 3 else 0)) & 0xffffffff
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        if (src, sport, dst, dport) == (adv, port, me, my_port) and later(end, nums["srv"]):
            nums["srv"] = end
        if (src, sport, dst, dport) == (me, my_port, adv, port) and later(end, nums["cli"]):
            nums["cli"] = end

def get(path):
    conn.sendall(("GET %s HTTP/1.1\r\nHost: lab\r\n\r\n" % path).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = conn.recv(65536)
        if not b:
            raise ConnectionError("closed in the headers")
        buf += b
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    size = next(int(l.split(":", 1)[1]) for l in lines if l.lower().startswith("content-length:"))
    while len(body) < size:
        b = conn.recv(65536)
        if not b:
            raise ConnectionError("closed in the body")
        body += b
    return {"status": int(lines[0].split()[1]), "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest()}

while True:
    line = sys.stdin.readline()
    if not line:
        break
    cmd = line.split()
    out = {"cmd": cmd[0], "port": my_port}
    try:
        if cmd[0] == "get":
            out.update(get(cmd[1]))
        else:
            watch()
            cli, srv = nums["cli"], nums["srv"]
            if cmd[0] == "rst":
                out["seq"] = (cli + 1000) & 0xffffffff
                send_tcp(adv, me, my_port, adv, port, cli + 1000, 0, 0x04)
            elif cmd[0] == "rst_far":
                out["seq"] = (cli + (1 << 30)) & 0xffffffff
                send_tcp(adv, me, my_port, adv, port, cli + (1 << 30), 0, 0x04)
            elif cmd[0] == "syn":
                isn = (cli + (1 << 31) + 12345) & 0xffffffff
                out["isn"] = isn
                send_tcp(adv, me, my_port, adv, port, isn, 0, 0x02,
                         opts=struct.pack("!BBH", 2, 4, 1460))
            elif cmd[0] == "ack":
                out["ack"] = (srv + (1 << 30)) & 0xffffffff
                send_tcp(adv, me, my_port, adv, port, cli, srv + (1 << 30), 0x10)
    except Exception as e:
        out["error"] = repr(e)
    print(json.dumps(out), flush=True)
"""


# SYNs from spoofed sources in 198.18.128.0/17, at a given rate or as fast as one process sends
# them, until the stop file exists or the time is up. 20000 distinct SYNs (source, port, ISN) sent in turn: when one
# comes round again its flow is long gone, so each is a new half-open flow.
FLOOD = RAW_TCP + r"""
import random
dst, dport, seconds, ready, stop = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4],
                                    sys.argv[5])
rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0  # SYNs per second; 0: as fast as it goes
rnd = random.Random(20261130)
mss = struct.pack("!BBH", 2, 4, 1460)
pkts = []
for i in range(20000):
    src = socket.inet_ntoa(struct.pack("!I", 0xC6128000 + rnd.randrange(1, 32767)))
    pkts.append(tcp_packet(src, rnd.randrange(1024, 65536), dst, dport, rnd.getrandbits(32), 0,
                           0x02, opts=mss))
to = (dst, 0)
open(ready, "w").close()
sent, t0 = 0, time.monotonic()
while not os.path.exists(stop) and time.monotonic() - t0 < seconds:
    for p in pkts[sent % 20000:sent % 20000 + 100]:
        RAW.sendto(p, to)
    sent += 100
    if rate:  # pace to the rate: sleep until the next batch is due
        ahead = t0 + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print(json.dumps({"sent": sent, "seconds": time.monotonic() - t0}))
"""


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class HostileCase(NodeCase):
    def counters(self, node):
        st = self.status(node)
        self.assertIsNotNone(st, f"{node} gives no status")
        return st["packet"]

    def wait_packet_counter(self, node, name, value, timeout=10):
        last = {}

        def probe():
            st = self.status(node)
            last["v"] = st["packet"].get(name) if st else None
            return last["v"] is not None and last["v"] >= value
        ul.wait_for(probe, timeout, f"{node} packet.{name} >= {value}",
                    details=lambda: f"last {last.get('v')}")

    def assert_still_duplex(self):
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertIsNotNone(st, f"{node} gives no status")
            self.assertEqual((st["mode"], st["failovers"], st["peer"]), ("duplex", 0, "alive"),
                             f"{node}: {st}")

    def memory(self):
        """{node: (VmRSS, VmHWM) in KiB} of each daemon."""
        out = {}
        for node in ("primary", "backup"):
            pids = self.lab.daemon_pids(node)
            self.assertTrue(pids, f"{node} daemon is gone")
            pid = sorted(pids)[0]
            out[node] = (vm_kib(pid, "VmRSS"), vm_kib(pid, "VmHWM"))
        return out


class BlindInjectionTest(HostileCase):
    def start_injector(self):
        p = subprocess.Popen(["ip", "netns", "exec", self.lab.ns("client"), "/usr/bin/python3",
                              "-c", INJECTOR, ADV, "80"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.background.append(p)
        return p

    def command(self, p, line):
        p.stdin.write((line + "\n").encode())
        p.stdin.flush()
        out = p.stdout.readline()
        if not out:
            self.fail(f"injector ended: {p.stderr.read()!r}")
        return json.loads(out)

    def assert_get(self, p, path):
        r = self.command(p, "get " + path)
        size, sha = self.lab.manifest[path]
        self.assertEqual((r.get("status"), r.get("size"), r.get("sha256")), (200, size, sha), r)
        return r

    def test_rst_syn_and_ack_on_a_live_connection_change_nothing(self):
        self.start_duplex()
        mem0 = self.memory()
        p = self.start_injector()
        port = self.assert_get(p, "/f/1k.bin")["port"]
        self.assert_get(p, "/f/100k.bin")
        before = {n: self.counters(n) for n in ("primary", "backup")}

        # (1) a RST in the window, not exact: both nodes ignore it; the primary challenges.
        self.command(p, "rst")
        for node in ("primary", "backup"):
            self.wait_packet_counter(node, "rst_ignored", before[node]["rst_ignored"] + 1)
        self.wait_packet_counter("primary", "challenge_acks", before["primary"]["challenge_acks"] + 1)
        self.assert_get(p, "/f/1k.bin")
        # ... and one far outside it: ignored without an answer.
        self.command(p, "rst_far")
        for node in ("primary", "backup"):
            self.wait_packet_counter(node, "rst_ignored", before[node]["rst_ignored"] + 2)
        # (2) a SYN with another ISN: a challenge ACK (or rate-limited), no new flow.
        self.command(p, "syn")
        for node in ("primary", "backup"):
            self.wait_packet_counter(node, "syns_on_live_flow",
                                     before[node]["syns_on_live_flow"] + 1)
        self.assert_get(p, "/f/100k.bin")
        # (3) an ACK far beyond what was sent: dropped on both nodes.
        self.command(p, "ack")
        for node in ("primary", "backup"):
            self.wait_packet_counter(node, "acks_beyond_sent", before[node]["acks_beyond_sent"] + 1)

        results = [self.assert_get(p, path) for path in ("/f/1k.bin", "/f/1m.bin", "/f/100k.bin")]
        self.assertEqual({r["port"] for r in results}, {port}, "the connection was replaced")
        after = {n: self.counters(n) for n in ("primary", "backup")}
        for node in ("primary", "backup"):
            self.assertEqual(after[node]["flows_opened"], before[node]["flows_opened"],
                             f"{node}: the SYN opened a flow")
            self.assertEqual(after[node]["rst_ignored"] - before[node]["rst_ignored"], 2, node)
            self.assertEqual(after[node]["acks_beyond_sent"] - before[node]["acks_beyond_sent"], 1)
        challenged = (after["primary"]["challenge_acks"] + after["primary"]["challenge_acks_limited"]
                      - before["primary"]["challenge_acks"]
                      - before["primary"]["challenge_acks_limited"])
        self.assertEqual(challenged, 2, "one for the in-window RST, one for the SYN")
        self.assertEqual(after["backup"]["challenge_acks"], 0, "the backup never answers in duplex")
        self.assert_still_duplex()
        mem1 = self.memory()
        for node in ("primary", "backup"):
            self.assertLess(mem1[node][0] - mem0[node][0], 16 * 1024, f"{node} memory grew")
        p.stdin.close()
        p.wait(timeout=10)
        print(f"\nhostile-packets: blind injection: 6 of 6 requests byte-exact on one connection, "
              f"failovers 0, rst_ignored {after['primary']['rst_ignored']}, challenge_acks "
              f"{after['primary']['challenge_acks']} (+{after['primary']['challenge_acks_limited']}"
              f" limited), syns_on_live_flow {after['primary']['syns_on_live_flow']}, "
              f"acks_beyond_sent {after['primary']['acks_beyond_sent']}, memory KiB {mem1}")


class SynFloodTest(HostileCase):
    CONNECTIONS = 50
    # More spoofed SYNs than limits.max_connections (16384, which filled main's table for good).
    ENOUGH = 16384
    # Paced, with cookies off: the half-open quarter of the table gives way, oldest first.
    RATE = 5000
    NO_COOKIES = {"syn_cookie_threshold": 10 ** 9}

    def flood(self, rate):
        ready, stop = self.ready_file("flood-ready"), self.ready_file("flood-stop")
        p = self.spawn_client(["/usr/bin/python3", "-c", FLOOD, ADV, "80", "120", ready, stop,
                               str(rate)])
        self.wait_file(ready, timeout=60)
        return p, stop

    def end_flood(self, flood):
        p, stop = flood
        open(stop, "w").close()
        rc, out, err = self.finish(p, timeout=30)
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def legit_connections(self, timeout=10):
        h = self.stream("legit", ["/f/1k.bin", "/f/100k.bin"], new_connections=True,
                        count=self.CONNECTIONS, timeout=timeout)
        res, _ = self.stream_outcome(h, stop=False, timeout=300)
        return res

    def assert_all_served(self, res):
        self.assertTrue(res["ok"], res["error"])
        self.assertEqual(len(res["results"]), self.CONNECTIONS)
        self.assertEqual(len({r["port"] for r in res["results"]}), self.CONNECTIONS)

    def test_spoofed_syn_flood_at_full_speed_is_answered_with_cookies(self):
        # The flood starts as soon as the pair is in duplex, before any client came: each node
        # asked its kernel at start what SYN-ACK it sends, which a cookie must promise.
        self.start_duplex()
        mem0 = self.memory()
        before = {n: self.counters(n) for n in ("primary", "backup")}
        flood = self.flood(0)
        self.wait_packet_counter("backup", "syn_cookies_sent",
                                 before["backup"]["syn_cookies_sent"] + self.ENOUGH, timeout=60)
        # The front sends a SYN-ACK for each spoofed SYN, ~300k/s into the lab's one client
        # namespace on 2 shared cores: a legitimate SYN or SYN-ACK is sometimes lost there, and
        # its client retries (connect's 1, 3, 7, 15 s): 30 s, and the slow ones are reported.
        res = self.legit_connections(timeout=30)
        mem1 = self.memory()
        after = {n: self.counters(n) for n in ("primary", "backup")}
        sent = self.end_flood(flood)
        times = sorted(r["ms"] for r in res["results"])
        delta = {n: {k: after[n][k] - before[n][k] for k in after[n]} for n in after}
        ok = len(res["results"])
        print(f"\nhostile-packets: SYN flood, full speed: {sent['sent']} spoofed SYNs in "
              f"{sent['seconds']:.1f} s ({sent['sent'] / sent['seconds']:.0f}/s); legitimate "
              f"{ok} of {self.CONNECTIONS} new connections byte-exact; backup syn_cookies_sent "
              f"{delta['backup']['syn_cookies_sent']}, flows opened "
              f"{delta['primary']['flows_opened']}/{delta['backup']['flows_opened']}, from "
              f"cookies {delta['primary']['syn_cookie_flows']}/"
              f"{delta['backup']['syn_cookie_flows']}, SYNs relayed {delta['backup']['relayed']} "
              f"(client packets in all), half_open_evicted "
              f"{delta['primary']['half_open_evicted']}/{delta['backup']['half_open_evicted']} "
              f"(primary/backup); request ms median {times[len(times) // 2] if times else None}"
              f", max {times[-1] if times else None}, over 1 s {sum(t > 1000 for t in times)}; "
              f"memory KiB before {mem0} after {mem1} (VmRSS, VmHWM)", flush=True)
        self.assert_all_served(res)
        self.assert_still_duplex()
        for node in ("primary", "backup"):
            self.assertEqual(delta[node]["dropped_table_full"], 0, f"{node}: the flow table filled")
            self.assertLess(mem1[node][1] - mem0[node][0], 64 * 1024, f"{node} memory grew")
        # The front answered the flood itself: the primary saw a small part of it (the SYNs that
        # came while the backup's half-open flows were under limits.syn_cookie_threshold).
        self.assertGreaterEqual(delta["backup"]["syn_cookies_sent"], self.ENOUGH)
        self.assertLess(delta["primary"]["flows_opened"], delta["backup"]["syn_cookies_sent"] / 10)
        # Some legitimate connections came while cookies were on, and were made from them on
        # both nodes alike.
        self.assertGreater(delta["backup"]["syn_cookie_flows"], 0)
        self.assertEqual(delta["primary"]["syn_cookie_flows"], delta["backup"]["syn_cookie_flows"])

    def test_spoofed_syn_flood_without_cookies_is_bounded(self):
        for node in ("primary", "backup"):
            self.lab.write_config(node, limits=self.NO_COOKIES)
        self.start_duplex()
        mem0 = self.memory()
        before = {n: self.counters(n) for n in ("primary", "backup")}
        flood = self.flood(self.RATE)
        # The half-open quarter of the table has been giving way for a while.
        for node in ("primary", "backup"):
            self.wait_packet_counter(node, "half_open_evicted", self.ENOUGH, timeout=60)
        res = self.legit_connections()
        mem1 = self.memory()
        after = {n: self.counters(n) for n in ("primary", "backup")}
        sent = self.end_flood(flood)
        ok = len(res["results"])
        print(f"\nhostile-packets: SYN flood, no cookies: {sent['sent']} spoofed SYNs in "
              f"{sent['seconds']:.1f} s ({sent['sent'] / sent['seconds']:.0f}/s); legitimate "
              f"{ok} of {self.CONNECTIONS} new connections byte-exact; half_open_evicted "
              f"{after['primary']['half_open_evicted']}/{after['backup']['half_open_evicted']}, "
              f"dropped_table_full {after['primary']['dropped_table_full']}/"
              f"{after['backup']['dropped_table_full']} (primary/backup); memory KiB before "
              f"{mem0} after {mem1} (VmRSS, VmHWM)", flush=True)
        self.assert_all_served(res)
        self.assert_still_duplex()
        for node in ("primary", "backup"):
            self.assertEqual(after[node]["dropped_table_full"], before[node]["dropped_table_full"],
                             f"{node}: the flow table filled")
            self.assertGreaterEqual(after[node]["half_open_evicted"], self.ENOUGH, node)
            self.assertEqual(after[node]["syn_cookies_sent"], 0, node)
            # 4096 half-open flows of a few hundred bytes each, and the kernel's side.
            self.assertLess(mem1[node][1] - mem0[node][0], 64 * 1024, f"{node} memory grew")


if __name__ == "__main__":
    unittest.main()

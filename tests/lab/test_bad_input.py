"""Bad input: broken configs, hostile HTTP, corrupt packets and a lying peer.

ConfigCheckTest needs no lab (a temp dir; `run` is tried inside a throw-away network namespace so
a daemon that wrongly starts cannot touch the host's network). BadInputTest runs the real daemon
in the lab and sends the bad input from the client namespace with raw Python sockets.
"""
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import unittest

from tests.lab.client_scripts import RAW_IPV4, READ_TO_END
from tests.lab.node_case import BINARY, NodeCase, ul

ADV = ul.ADVERTISED_IP
PRIMARY_IP = ul.NODE_IPS["primary"]
BACKUP_IP = ul.NODE_IPS["backup"]
CLIENT_IP = ul.NODE_IPS["client"]
PEER_PORT = 7400

# ---------------------------------------------------------------------------------------------
# Scripts run in the client namespace (python3 -c SCRIPT ARGS...). Each prints one JSON object.

# Send one raw HTTP request, read until the server closes; report what came back and how.
RAW_HTTP = r"""
import json, socket, sys
host, port, req = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]) if sys.argv[3] else b""
req_file = sys.argv[4] if len(sys.argv) > 4 else ""
if req_file:
    req = open(req_file, "rb").read()
split = int(sys.argv[5]) if len(sys.argv) > 5 else 0
s = socket.create_connection((host, port), timeout=10)
send_error = None
data, end = b"", None
if split:
    # Send the first `split` bytes, then give the server up to 3 s to answer on its own (an
    # early error reply, or a reset); if it has not, send the rest.
    s.sendall(req[:split])
    s.settimeout(3)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                end = "eof"; break
            data += b
    except socket.timeout:
        pass
    except ConnectionResetError:
        end = "reset"
    s.settimeout(10)
    req = req[split:] if end is None else b""
try:
    s.sendall(req)
except OSError as e:
    send_error = repr(e)
""" + READ_TO_END + r"""
print(json.dumps({"reply": data.decode("latin-1"), "end": end, "send_error": send_error}))
"""

# Raw IPv4 packets (IPPROTO_RAW implies IP_HDRINCL: we build the IP header ourselves).
RAW_COMMON = RAW_IPV4 + r"""
def send_ip(src, dst, proto, payload, ident=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(ip_header(src, dst, proto, len(payload), ident) + payload, (dst, 0))
    s.close()
"""

# N SYNs to the advertised address whose TCP checksum is wrong (the right one + 1).
BAD_CSUM_SYN = RAW_COMMON + r"""
src, dst, dport, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    sport = 40000 + i
    seq = int.from_bytes(os.urandom(4), "big")
    opts = struct.pack("!BBH", 2, 4, 1360)  # MSS
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + 1) << 4, 0x02, 64240, 0, 0) + opts
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    good = csum(pseudo + tcp)
    bad = (good + 1) & 0xffff or 1
    tcp = tcp[:16] + struct.pack("!H", bad) + tcp[18:]
    send_ip(src, dst, 6, tcp, ident=i + 1)
print(json.dumps({"sent": n}))
"""

# Forged peer datagrams with a spoofed source. Kinds:
#   random     random bytes
#   hb         a well-formed heartbeat frame (version 1, type Heartbeat, primary/duplex, huge
#              counter and boot id) with a random tag
# With --every MS, repeat the 'hb' kind every MS milliseconds until killed (or --for seconds).
FORGE_UDP = RAW_COMMON + r"""
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kinds = sys.argv[4].split(",")
every_ms = float(sys.argv[5]) if len(sys.argv) > 5 else 0
duration = float(sys.argv[6]) if len(sys.argv) > 6 else 0
ready = sys.argv[7] if len(sys.argv) > 7 else ""

def frame(kind, counter):
    if kind == "random":
        return os.urandom(64)
    if kind == "hb":
        payload = bytes([0, 1]) + struct.pack("!Q", (1 << 62) + counter)  # role primary, duplex
        head = struct.pack("!BBHQI", 1, 16, 0, (1 << 62) + counter, len(payload))
        return head + payload + os.urandom(16)
    raise SystemExit("unknown kind " + kind)

def udp(payload):
    return struct.pack("!HHHH", port, port, 8 + len(payload), 0) + payload  # checksum 0: none

sent = 0
if every_ms:
    t_end = time.monotonic() + duration
    while time.monotonic() < t_end:
        send_ip(src, dst, 17, udp(frame("hb", sent)), ident=sent & 0xffff)
        sent += 1
        if sent == 1 and ready:
            open(ready, "w").close()
        time.sleep(every_ms / 1000.0)  # the pacing of the forger, not a synchronisation
else:
    for k in kinds:
        send_ip(src, dst, 17, udp(frame(k, sent)), ident=sent + 1)
        sent += 1
print(json.dumps({"sent": sent}))
"""

# A TCP connection to the primary's replication port from the wrong host.
PEER_TCP = r"""
import json, os, socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((host, port), timeout=5)
except ConnectionRefusedError:
    print(json.dumps({"end": "refused"})); sys.exit(0)
try:
    # A well-formed Hello-shaped frame with a random tag.
    payload = os.urandom(34)
    s.sendall(struct.pack("!BBHQI", 1, 1, 0, 0, len(payload)) + payload + os.urandom(16))
except OSError:
    pass
try:
    b = s.recv(4096)
    end = "eof" if not b else "data:" + b.hex()
except socket.timeout:
    end = "timeout"
except ConnectionResetError:
    end = "reset"
print(json.dumps({"end": end}))
"""


# ---------------------------------------------------------------------------------------------
class ConfigCheckTest(unittest.TestCase):
    """`understudy check` and `understudy run` on good and bad configs (no lab)."""

    def setUp(self):
        if not (os.path.isfile(BINARY) and os.access(BINARY, os.X_OK)):
            self.skipTest(f"no binary at {BINARY}")
        self.dir = tempfile.mkdtemp(prefix="understudy-cfg-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.key = os.path.join(self.dir, "peer.key")
        with open(self.key, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(self.key, 0o600)
        # The lab writes the same config format the daemon documents.
        self.lab = ul.Lab(workdir=self.dir, binary=BINARY)

    def config(self, **overrides):
        cfg = self.lab.write_config("primary", **overrides)
        return cfg

    def check(self, cfg):
        cp = subprocess.run([BINARY, "check", "--config", cfg], capture_output=True, timeout=10)
        return cp.returncode, cp.stdout.decode(errors="replace"), cp.stderr.decode(errors="replace")

    def assert_rejected(self, cfg, key, also=()):
        rc, out, err = self.check(cfg)
        self.assertEqual(rc, 2, f"stdout {out!r} stderr {err!r}")
        text = (out + err).strip()
        lines = text.splitlines()
        self.assertEqual(len(lines), 1, f"want one line, got {text!r}")
        self.assertIn(key, lines[0])
        for word in also:
            self.assertIn(word, lines[0])
        return lines[0]

    def test_key_file_readable_by_others_is_refused(self):
        cfg = self.lab.write_config("primary")
        os.chmod(self.key, 0o644)
        line = self.assert_rejected(cfg, "peer.key_file", also=("readable by group or others",
                                                               f"chmod 600 {self.key}"))
        self.assertIn("0644", line)
        os.chmod(self.key, 0o600)
        self.assertEqual(self.check(cfg)[0], 0)

    def test_keygen_out_writes_a_private_key_once(self):
        path = os.path.join(self.dir, "new.key")
        cp = subprocess.run([BINARY, "keygen", "--out", path], capture_output=True, timeout=10)
        self.assertEqual((cp.returncode, cp.stdout, cp.stderr), (0, b"", b""))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(path) as f:
            first = f.read()
        self.assertRegex(first, r"^[0-9a-f]{64}\n$")
        cp = subprocess.run([BINARY, "keygen", "--out", path], capture_output=True, timeout=10)
        self.assertEqual(cp.returncode, 1)
        self.assertIn(b"File exists", cp.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), first, "an existing key must never be replaced")
        rc, out, err = self.check(self.lab.write_config("primary", peer={"key_file": path}))
        self.assertEqual(rc, 0, out + err)

    def test_good_config(self):
        for role in ("primary", "backup"):
            with self.subTest(role=role):
                cfg = self.lab.write_config(role)
                rc, out, err = self.check(cfg)
                self.assertEqual(rc, 0, out + err)
                self.assertIn(role, out)

    def test_unknown_key(self):
        self.assert_rejected(self.config(heartbeat_intervall_ms=20), "intervall_ms")

    def test_unknown_table(self):
        self.assert_rejected(self.config(hearbeat={"interval_ms": 20}), "hearbeat")

    def test_bad_address(self):
        for bad in ("198.18.0.300", "not-an-address", "198.18.0"):
            with self.subTest(address=bad):
                self.assert_rejected(self.config(node_address=bad), "node.address")
        self.assert_rejected(self.config(service_advertised="198.18.0.100:99999"), "service.advertised")

    def test_timeout_below_twice_interval(self):
        self.assert_rejected(self.config(heartbeat_interval_ms=20, heartbeat_timeout_ms=39),
                             "heartbeat.timeout_ms")
        rc, out, err = self.check(self.config(heartbeat_interval_ms=20, heartbeat_timeout_ms=40))
        self.assertEqual(rc, 0, out + err)

    def test_missing_key_file(self):
        self.assert_rejected(self.config(peer_key_file=os.path.join(self.dir, "no-such.key")),
                             "peer.key_file")

    def test_role_leader(self):
        self.assert_rejected(self.config(node_role="leader"), "node.role", also=("leader",))

    def test_missing_config_file(self):
        rc, out, err = self.check(os.path.join(self.dir, "nope.toml"))
        self.assertEqual(rc, 2, out + err)

    def test_run_with_bad_config_exits_2_without_starting(self):
        cfg = self.config(node_role="leader")
        sock = os.path.join(self.dir, "primary", "control.sock")
        # A fresh network namespace: even a daemon that wrongly starts sees only a lonely lo.
        cp = subprocess.run(["unshare", "--net", "--", BINARY, "run", "--config", cfg],
                            capture_output=True, timeout=20)
        out = (cp.stdout + cp.stderr).decode(errors="replace").strip()
        self.assertEqual(cp.returncode, 2, out)
        self.assertIn("node.role", out)
        self.assertEqual(len(out.splitlines()), 1, out)
        self.assertFalse(os.path.exists(sock), "the daemon got as far as its control socket")


# ---------------------------------------------------------------------------------------------
class BadInputTest(NodeCase):
    # ---- helpers
    def client_py(self, script, *args, timeout=30):
        cp = self.lab.run_client(["/usr/bin/python3", "-c", script] + [str(a) for a in args],
                                 timeout=timeout)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        return json.loads(cp.stdout.decode())

    def counter(self, node, section, name):
        st = self.status(node)
        self.assertIsNotNone(st, f"{node} gives no status")
        return st[section][name]

    def wait_counter(self, node, section, name, value, timeout=10):
        last = {}

        def probe():
            st = self.status(node)
            last["v"] = st[section][name] if st else None
            return st is not None and st[section][name] >= value
        ul.wait_for(probe, timeout, f"{node} {section}.{name} >= {value}",
                    details=lambda: f"last {last.get('v')}")
        v = self.counter(node, section, name)
        self.assertEqual(v, value, f"{node} {section}.{name}")

    def assert_still_duplex(self):
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertIsNotNone(st, f"{node} gives no status")
            self.assertEqual((st["mode"], st["failovers"], st["peer"]), ("duplex", 0, "alive"),
                             f"{node}: {st}")
        self.assertTrue(self.status("primary")["channel_up"])

    def assert_get_ok(self, path="/f/1m.bin"):
        size, sha = self.lab.manifest[path]
        r = self.lab.curl_fetch(path, max_time=30)
        self.assertEqual((r.rc, r.status, r.size, r.sha256), (0, 200, size, sha), r.stderr)

    def raw_http(self, request, split=0):
        path = os.path.join(self.lab.node_dir("client"), f"req-{secrets.token_hex(4)}.bin")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(request)
        return self.client_py(RAW_HTTP, ADV, 80, "", path, split)

    def assert_error_reply(self, res, status):
        reply = res["reply"]
        head, sep, body = reply.partition("\r\n\r\n")
        self.assertTrue(sep, f"no complete reply: {res}")
        lines = head.split("\r\n")
        self.assertTrue(lines[0].startswith(f"HTTP/1.1 {status} "), res)
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        self.assertEqual(headers.get("connection", "").lower(), "close", res)
        self.assertEqual(len(body), int(headers["content-length"]), res)  # nothing after it
        self.assertEqual(res["end"], "eof", f"server did not close cleanly: {res}")

    def bad_request(self, request, status, split=0):
        self.start_duplex()
        before = {n: self.counter(n, "message", "bad_requests") for n in ("primary", "backup")}
        self.assertEqual(before["primary"], 0)
        res = self.raw_http(request, split)
        self.assert_error_reply(res, status)
        self.wait_counter("primary", "message", "bad_requests", 1)
        self.assert_still_duplex()
        self.assert_get_ok()
        self.assertEqual(self.counter("primary", "message", "bad_requests"), 1)
        self.assert_still_duplex()

    # ---- HTTP
    def test_smuggling_shape_gets_400_and_close(self):
        self.bad_request(b"POST /echo HTTP/1.1\r\nHost: 198.18.0.100\r\nContent-Length: 5\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)

    # Regression: header bytes used to reach nginx before the daemon's framer had the whole header
    # block; nginx then refused them alone and the client got a RST instead of a reply.
    def test_oversized_headers_get_431_and_close(self):
        big = b"X-Big: " + b"a" * (66 << 10) + b"\r\n"
        self.assertGreater(len(big), 64 << 10)
        # 32 KiB first (nginx alone would already refuse that), then the rest.
        self.bad_request(b"GET /f/1k.bin HTTP/1.1\r\nHost: 198.18.0.100\r\n" + big + b"\r\n", 431,
                         split=32 << 10)

    # A request the daemon accepts but nginx refuses (one 16 KiB header line): nginx's own error
    # reply reaches the client, framed as the reply to that request.
    def test_web_server_early_error_reply_is_relayed(self):
        self.start_duplex()
        req = b"GET /f/1k.bin HTTP/1.1\r\nHost: 198.18.0.100\r\nX-Long: " + b"b" * (16 << 10)
        # The long line first, its end after the server had the chance to answer alone.
        res = self.raw_http(req + b"\r\n\r\n", split=len(req))
        self.assert_error_reply(res, 400)
        self.assertIn("Request Header Or Cookie Too Large", res["reply"])
        self.assert_still_duplex()
        self.assert_get_ok()

    def test_good_request_then_smuggling_shape_on_one_connection(self):
        """A good request answered in full, then the bad one answered 400 on the same connection."""
        self.start_duplex()
        size, sha = self.lab.manifest["/f/1k.bin"]
        res = self.raw_http(b"GET /f/1k.bin HTTP/1.1\r\nHost: 198.18.0.100\r\n\r\n"
                            b"POST /echo HTTP/1.1\r\nHost: 198.18.0.100\r\nContent-Length: 5\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        reply = res["reply"].encode("latin-1")
        head, _, rest = reply.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), res)
        self.assertEqual(hashlib.sha256(rest[:size]).hexdigest(), sha)
        second = dict(res, reply=rest[size:].decode("latin-1"))
        self.assert_error_reply(second, 400)
        self.wait_counter("primary", "message", "bad_requests", 1)
        self.assert_still_duplex()
        self.assert_get_ok()

    # ---- packets with bad TCP checksums
    def test_bad_tcp_checksum_syns_are_dropped(self):
        self.start_duplex()
        n = 5
        b0 = self.status("backup")["packet"]
        p0 = self.status("primary")["packet"]
        self.assertEqual(self.client_py(BAD_CSUM_SYN, CLIENT_IP, ADV, 80, n)["sent"], n)
        self.wait_counter("backup", "packet", "dropped_bad_checksum", b0["dropped_bad_checksum"] + n)
        b1 = self.status("backup")["packet"]
        p1 = self.status("primary")["packet"]
        self.assertEqual(b1["flows_opened"], b0["flows_opened"])
        self.assertEqual(p1["flows_opened"], p0["flows_opened"])
        self.assertEqual(b1["relayed"], b0["relayed"], "a corrupt packet was relayed")
        self.assert_still_duplex()
        self.assert_get_ok()
        self.assertEqual(self.status("backup")["packet"]["flows_opened"], b0["flows_opened"] + 1)

    # ---- a peer that lies
    def test_forged_datagrams_to_backup_are_rejected(self):
        self.start_duplex()
        before = self.counter("backup", "peer_channel", "rejected_datagrams")
        self.assertEqual(before, 0)
        kinds = "random,random,random,hb,hb,hb"
        res = self.client_py(FORGE_UDP, PRIMARY_IP, BACKUP_IP, PEER_PORT, kinds)
        self.assertEqual(res["sent"], 6)
        self.wait_counter("backup", "peer_channel", "rejected_datagrams", 6)
        self.assert_still_duplex()
        self.assert_get_ok()

    def test_forged_channel_connection_to_primary_is_refused(self):
        self.start_duplex()
        before = self.counter("primary", "peer_channel", "rejected_frames")
        self.assertEqual(before, 0)
        res = self.client_py(PEER_TCP, PRIMARY_IP, PEER_PORT)
        self.assertIn(res["end"], ("refused", "eof", "reset"), res)
        self.wait_counter("primary", "peer_channel", "rejected_frames", 1)
        self.assert_still_duplex()
        self.assert_get_ok()

    def test_forged_heartbeats_do_not_keep_a_dead_primary_alive(self):
        self.start_duplex()
        ready = self.ready_file("forger")
        # Forged heartbeats "from the primary" every 10 ms for up to 20 s (killed when done).
        p = self.spawn_client(["/usr/bin/python3", "-c", FORGE_UDP, PRIMARY_IP, BACKUP_IP,
                               str(PEER_PORT), "hb", "10", "20", ready])
        self.wait_file(ready)
        ul.wait_for(lambda: self.counter("backup", "peer_channel", "rejected_datagrams") >= 5, 10,
                    "backup to reject forged heartbeats")
        self.assert_still_duplex()  # forged heartbeats are no harm while the primary lives
        self.lab.crash("primary")
        st = self.wait_survivor("backup")
        self.assertIsNone(p.poll(), "the forger stopped before the takeover")
        p.kill()
        p.wait()
        self.assertGreater(st["peer_channel"]["rejected_datagrams"], 5)
        self.assertEqual(st["peer"], "dead")
        self.assert_get_ok()


if __name__ == "__main__":
    unittest.main()

"""Hostile clients against the real daemons (issue 10, items 1 and 4; docs/CONFIG.md, `limits.*`).

Each test attacks from the lab's client namespace while a legitimate client is served, then checks
the legitimate replies byte-exact, both nodes still in duplex with no failover, the daemons' memory
(VmRSS/VmHWM from /proc/<pid>/status) bounded, and the counters that show what was refused:

* a flood after a 400 on one connection is read and dropped (`message.discarded_bytes`);
* an upload with a huge Content-Length is answered 413 by the daemon itself, on both nodes alike,
  and does not pin the backup's request cache (another upload larger than the cache goes on);
* slowhttptest's slowloris (-H) and slow body (-B) connections are closed by the head and body
  deadlines (`message.head_timeouts`, `message.body_timeouts`);
* connections from one address beyond `limits.max_connections_per_source` are closed at once
  (`message.refused_per_source`) while another address is served;
* slowhttptest's slow readers (-X: large pipelined replies, a window of a few hundred bytes read
  a few bytes at a time) are reset by the send deadline (`message.send_timeouts`), the backup
  following the primary's replicated Abort, while a download read slowly but steadily is not.

Each prints one `hostile:` line with the numbers the closing note of issue 10 needs.
"""
import json
import threading
import time

from tests.lab.client_scripts import READ_TO_END
from tests.lab.node_case import NodeCase, ul

ADV = ul.ADVERTISED_IP
MIB = 1 << 20
SECOND_SOURCE = "198.18.0.3"  # a second client address (the client namespace's /24)

# A bad request (smuggling-shaped: 400), then `total` bytes of junk on the same connection, then a
# read of what came back. Prints {"sent", "reply", "end", "send_error"}.
FLOOD_AFTER_400 = r"""
import json, socket, sys
host, total = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, 80), timeout=60)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: lab\r\nContent-Length: 5\r\n"
          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
chunk = b"x" * (1 << 20)
sent, send_error = 0, None
try:
    while sent < total:
        s.sendall(chunk)
        sent += len(chunk)
except OSError as e:
    send_error = repr(e)
s.shutdown(socket.SHUT_WR)
data, end = b"", None
""" + READ_TO_END + r"""
print(json.dumps({"sent": sent, "reply": data.decode("latin-1"), "end": end,
                  "send_error": send_error}))
"""

# An upload announcing `announced` bytes that sends `send` bytes of it, then holds the connection
# open until the file `release` exists (at most 60 s). Prints {"sent", "reply", "end"}.
HUGE_UPLOAD = r"""
import json, os, socket, sys, time
host, announced, send, ready, release = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
s = socket.create_connection((host, 80), timeout=60)
s.sendall(f"POST /echo HTTP/1.1\r\nHost: lab\r\nContent-Length: {announced}\r\n\r\n".encode())
chunk = b"u" * (1 << 16)
sent = 0
try:
    while sent < send:
        s.sendall(chunk)
        sent += len(chunk)
except OSError:
    pass
open(ready, "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.05)
s.settimeout(5)
data, end = b"", None
""" + READ_TO_END + r"""
print(json.dumps({"sent": sent, "reply": data.decode("latin-1"), "end": end}))
"""

# Opens `n` connections from `source`, writes `ready`, waits for `go`, then sends a
# `Connection: close` GET on each and reads to the end. Prints {"served", "refused", "other"}:
# served = a 200 reply, refused = closed with no byte.
MANY_CONNECTIONS = r"""
import json, os, socket, sys, time
host, source, n, path, ready, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
socks = []
for _ in range(n):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(20)
    s.connect((host, 80))
    socks.append(s)
open(ready, "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.05)
served = refused = 0
other = []
for s in socks:
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n".encode())
    except OSError:
        pass
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except OSError as e:
        other.append(repr(e))
        continue
    if data.startswith(b"HTTP/1.1 200"):
        served += 1
    elif not data:
        refused += 1
    else:
        other.append(data[:80].decode("latin-1"))
print(json.dumps({"served": served, "refused": refused, "other": other}))
"""


def vm(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out["VmRSS"], out["VmHWM"]


class MemoryWatch:
    """Samples both daemons' VmRSS every 100 ms in a thread; `growth()` is the largest rise over
    the first sample (or VmHWM's, whichever is larger) per node."""

    def __init__(self, lab):
        self.pids = {n: lab.daemon_pids(n)[0] for n in ("primary", "backup")}
        self.start = {n: vm(p) for n, p in self.pids.items()}
        self.peak = {n: r for n, (r, _) in self.start.items()}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.1):
            for n, p in self.pids.items():
                try:
                    self.peak[n] = max(self.peak[n], vm(p)[0])
                except (OSError, KeyError):
                    pass

    def stop(self):
        """Per node: VmRSS at the start, the peak during the watch (VmHWM if it rose past its
        value at the start, else the largest sample) and the growth, in MiB."""
        self._stop.set()
        self._t.join()
        out = {}
        for n, p in self.pids.items():
            rss0, hwm0 = self.start[n]
            hwm = vm(p)[1]
            peak = hwm if hwm > hwm0 else self.peak[n]
            out[n] = {"rss_start_mib": round(rss0 / MIB, 1), "peak_mib": round(peak / MIB, 1),
                      "growth_mib": round((peak - rss0) / MIB, 1)}
        return out


# A GET of `big` on a connection that reads nothing, until the send deadline resets it (awaited
# with poll: an error is reported whatever the mask), then a GET of `small` from the same address
# and port at once, as a client's port allocator may do. Prints {"port", "first_error", "second"}.
PORT_REUSE_AFTER_RESET = r"""
import errno, hashlib, http.client, json, select, socket, sys
host, source, big, small = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind((source, 0))
port = s.getsockname()[1]
s.connect((host, 80))
s.sendall(f"GET {big} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
poller = select.poll()
poller.register(s, 0)
if not poller.poll(60000):
    sys.exit("no reset within 60 s")
err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
s.close()
c = http.client.HTTPConnection(host, 80, timeout=30, source_address=(source, port))
c.request("GET", small, headers={"Connection": "close"})
r = c.getresponse()
body = r.read()
print(json.dumps({"port": port, "first_error": errno.errorcode.get(err, str(err)),
                  "second": {"status": r.status, "size": len(body),
                             "sha256": hashlib.sha256(body).hexdigest()}}))
"""

class HostileClientTest(NodeCase):
    MAX_GROWTH_MIB = 32

    # ---- helpers
    def client_py(self, script, *args):
        return self.spawn_client(["/usr/bin/python3", "-c", script] + [str(a) for a in args])

    def py_result(self, p, timeout=120):
        rc, out, err = self.finish(p, timeout)
        self.assertEqual(rc, 0, out + err)
        return json.loads(out.decode())

    def assert_duplex_no_failover(self):
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertIsNotNone(st, f"{node} gives no status")
            self.assertEqual((st["mode"], st["failovers"], st["peer"]), ("duplex", 0, "alive"),
                             f"{node}: {st}")

    def assert_memory_bounded(self, mem):
        for node, m in mem.items():
            self.assertLess(m["growth_mib"], self.MAX_GROWTH_MIB, f"{node}: {mem}")

    def legit_stream(self, name="legit"):
        return self.stream(name, ["/f/100k.bin", "/f/1k.bin", "/f/10k.bin"], interval_ms=20,
                           new_connections=True, timeout=30)

    def legit_outcome(self, h):
        res, _ = self.stream_outcome(h)
        self.assertTrue(res["ok"], f"a legitimate request failed: {res.get('error')}")
        self.assertGreater(len(res["results"]), 0)
        return len(res["results"])

    def message(self, node):
        return self.status(node)["message"]

    def report(self, attack, **numbers):
        print(f"\nhostile: {attack}: " + json.dumps(numbers, sort_keys=True), flush=True)

    def assert_error_reply(self, text, status):
        head, sep, body = text.partition("\r\n\r\n")
        self.assertTrue(sep, f"no complete reply: {text!r}")
        self.assertTrue(head.startswith(f"HTTP/1.1 {status} "), text)
        self.assertIn("Connection: close", head)
        self.assertIn(f"Content-Length: {len(body)}", head, "nothing may follow the error reply")

    # ---- (a) 300 MiB after a 400 on one connection
    FLOOD = 300 * MIB

    def test_flood_after_a_400_is_discarded(self):
        for node in ("primary", "backup"):
            # The flood must end before the close deadline would reset it (a loaded host).
            self.lab.write_config(node, limits={"close_timeout_ms": 120000})
        self.start_duplex()
        mem = MemoryWatch(self.lab)
        legit = self.legit_stream()
        t0 = time.monotonic()
        flood = self.py_result(self.client_py(FLOOD_AFTER_400, ADV, self.FLOOD), timeout=200)
        seconds = time.monotonic() - t0
        served = self.legit_outcome(legit)
        numbers = mem.stop()
        self.assertEqual((flood["sent"], flood["send_error"]), (self.FLOOD, None), flood)
        self.assert_error_reply(flood["reply"], 400)
        self.assertEqual(flood["end"], "eof", flood)
        for node in ("primary", "backup"):
            ul.wait_for(lambda: self.message(node)["discarded_bytes"] >= self.FLOOD, 20,
                        f"{node}: the flood counted as discarded",
                        details=lambda: json.dumps(self.message(node)))
        self.assert_duplex_no_failover()
        self.assert_memory_bounded(numbers)
        p, b = self.message("primary"), self.message("backup")
        # The backup frames the bad request too, unless the primary's Close reached it first:
        # then it discards the bytes without framing them.
        self.assertEqual(p["bad_requests"], 1)
        self.assertLessEqual(b["bad_requests"], 1)
        self.report("flood_after_400", memory=numbers, legit_served=served, legit_failed=0,
                    failovers=0, seconds=round(seconds, 1),
                    discarded_mib={"primary": round(p["discarded_bytes"] / MIB, 1),
                                   "backup": round(b["discarded_bytes"] / MIB, 1)})

    # ---- (b) a huge Content-Length beside a legitimate upload larger than the backup's cache
    CACHE = 1 * MIB      # limits.request_cache_bytes on the backup
    BODY_LIMIT = 8 * MIB  # limits.max_body_bytes, both nodes
    UPLOAD = 3 * MIB     # the legitimate upload: over the cache, within the body limit
    JUNK = 20 * MIB      # what the hostile upload sends of its announced 10 GiB

    def test_huge_upload_gets_413_and_does_not_pause_others(self):
        self.lab.write_config("primary", limits={"max_body_bytes": self.BODY_LIMIT})
        self.lab.write_config("backup", limits={"max_body_bytes": self.BODY_LIMIT,
                                                "request_cache_bytes": self.CACHE})
        self.start_duplex()
        mem = MemoryWatch(self.lab)
        ready, release = self.ready_file("huge-ready"), self.ready_file("huge-release")
        huge = self.client_py(HUGE_UPLOAD, ADV, 10 << 30, self.JUNK, ready, release)
        self.wait_file(ready, timeout=60)
        body, sha = self.lab.make_body(self.UPLOAD, seed=b"legit-upload")
        t0 = time.monotonic()
        r = self.lab.curl_fetch("/echo", data_file=body, max_time=20, keep_body=True)
        upload_s = time.monotonic() - t0
        open(release, "w").close()
        res = self.py_result(huge)
        numbers = mem.stop()
        self.assertEqual((r.rc, r.status), (0, 200), r.stderr)
        self.assertEqual(json.loads(r.body), {"length": self.UPLOAD, "sha256": sha, "node": "primary"})
        self.assert_error_reply(res["reply"], 413)
        self.assertIn("Content Too Large", res["reply"])
        self.assertEqual(res["end"], "eof", res)
        for node in ("primary", "backup"):
            m = self.message(node)
            # As above: the backup may have had the primary's Close first.
            self.assertIn(m["bad_requests"], (1,) if node == "primary" else (0, 1), f"{node}: {m}")
            self.assertGreaterEqual(m["discarded_bytes"], self.JUNK, f"{node}: {m}")
        self.assert_duplex_no_failover()
        self.assert_memory_bounded(numbers)
        self.report("huge_content_length", memory=numbers, legit_upload_s=round(upload_s, 2),
                    legit_served=1, failovers=0,
                    discarded_mib={n: round(self.message(n)["discarded_bytes"] / MIB, 1)
                                   for n in ("primary", "backup")})

    # ---- (c) slowhttptest: slowloris and slow body
    CONNS = 500  # per mode

    def slowhttptest(self, mode, url, interval, seconds):
        return self.spawn_client(["slowhttptest", mode, "-c", str(self.CONNS), "-r", "250",
                                  "-i", str(interval), "-l", str(seconds), "-x", "10", "-p", "3",
                                  "-s", "65536", "-u", url])

    def test_slowhttptest_slowloris_and_slow_body(self):
        for node in ("primary", "backup"):
            self.lab.write_config(node, limits={"header_timeout_ms": 2000, "body_timeout_ms": 2000,
                                                "close_timeout_ms": 2000,
                                                "max_connections_per_source": 0})
        self.start_duplex()
        mem = MemoryWatch(self.lab)
        legit = self.legit_stream()
        # Headers trickle every second (slower in total than the head deadline); the body every
        # 3 s (a longer gap than the body deadline).
        slow = [self.slowhttptest("-H", f"http://{ADV}/f/1k.bin", 1, 15),
                self.slowhttptest("-B", f"http://{ADV}/echo", 3, 15)]
        ul.wait_for(lambda: all(p.poll() is not None for p in slow), 60, "slowhttptest to end")
        served = self.legit_outcome(legit)
        numbers = mem.stop()
        for p in slow:
            rc, out, err = self.finish(p, 10)
            self.assertEqual(rc, 0, err.decode(errors="replace")[-500:])
        p = self.message("primary")
        self.assertGreater(p["head_timeouts"], 0, p)
        self.assertGreater(p["body_timeouts"], 0, p)
        self.assert_duplex_no_failover()
        self.assert_memory_bounded(numbers)
        # Still served once the attack is over.
        size, sha = self.lab.manifest["/f/1m.bin"]
        r = self.lab.curl_fetch("/f/1m.bin", max_time=20)
        self.assertEqual((r.rc, r.status, r.size, r.sha256), (0, 200, size, sha), r.stderr)
        self.report("slowhttptest", memory=numbers, legit_served=served, legit_failed=0,
                    failovers=0, head_timeouts=p["head_timeouts"], body_timeouts=p["body_timeouts"],
                    close_timeouts=p["close_timeouts"], accepted=p["accepted"])

    # ---- (d) the per-source cap
    CAP = 20
    OPENED = 30

    def test_connections_beyond_the_per_source_cap_are_refused(self):
        for node in ("primary", "backup"):
            self.lab.write_config(node, limits={"max_connections_per_source": self.CAP})
        self.start_duplex()
        self.lab.run_client(["ip", "addr", "add", f"{SECOND_SOURCE}/24", "dev", "eth0"], check=True)
        mem = MemoryWatch(self.lab)
        ready, go = self.ready_file("many-ready"), self.ready_file("many-go")
        many = self.client_py(MANY_CONNECTIONS, ADV, ul.NODE_IPS["client"], self.OPENED, "/f/1k.bin",
                              ready, go)
        self.wait_file(ready, timeout=30)
        ul.wait_for(lambda: self.message("primary")["refused_per_source"] >= self.OPENED - self.CAP,
                    20, "the primary to refuse the connections over the cap",
                    details=lambda: json.dumps(self.message("primary")))
        # Another address is served meanwhile, byte-exact.
        size, sha = self.lab.manifest["/f/1m.bin"]
        r = self.lab.curl_fetch("/f/1m.bin", max_time=20, extra=["--interface", SECOND_SOURCE])
        self.assertEqual((r.rc, r.status, r.size, r.sha256), (0, 200, size, sha), r.stderr)
        open(go, "w").close()
        res = self.py_result(many)
        numbers = mem.stop()
        self.assertEqual(res, {"served": self.CAP, "refused": self.OPENED - self.CAP, "other": []})
        p = self.message("primary")
        self.assertEqual(p["refused_per_source"], self.OPENED - self.CAP, p)
        self.assertEqual(self.message("backup")["refused_per_source"], 0)  # the primary decides
        self.assert_duplex_no_failover()
        self.assert_memory_bounded(numbers)
        # Once they are gone, the first address is served again.
        r = self.lab.curl_fetch("/f/1m.bin", max_time=20)
        self.assertEqual((r.rc, r.status, r.size, r.sha256), (0, 200, size, sha), r.stderr)
        self.report("per_source_cap", memory=numbers, served=res["served"], refused=res["refused"],
                    other_source_served=1, failovers=0)

    # ---- (e) clients that do not read what they asked for
    def test_port_reused_after_a_send_deadline_reset_is_served(self):
        # The primary resets a client that reads nothing; the backup follows its Abort. The
        # client's next connection from the same port must open on both nodes alike.
        for node in ("primary", "backup"):
            self.lab.write_config(node, limits={"send_timeout_ms": 2000})
        self.start_duplex()
        res = self.py_result(self.client_py(PORT_REUSE_AFTER_RESET, ADV, ul.NODE_IPS["client"],
                                            "/f/64m.bin", "/f/1m.bin"), timeout=120)
        self.assertEqual(res["first_error"], "ECONNRESET", res)
        self.assert_reply(res["second"], "/f/1m.bin")
        p, b = self.message("primary"), self.message("backup")
        self.assertEqual(p["send_timeouts"], 1, p)
        self.assertEqual(b["aborted"], 1, b)
        for node in ("primary", "backup"):
            self.assertEqual(self.status(node)["packet"]["syns_on_live_flow"], 0, node)
        self.assert_duplex_no_failover()

    # ---- (e) slowhttptest -X: clients that do not read what they asked for
    READERS = 200
    # A 2 s send deadline; a small replication window, so 200 stuck replies fit the memory bound
    # (each holds about two windows in each daemon, docs/CONFIG.md, and the backup about 100 KiB
    # more per connection until the reset).
    SLOW_READ_LIMITS = {"send_timeout_ms": 2000, "replication_window_bytes": 32768,
                        "max_connections_per_source": 0}
    # Sessions the primary may keep after the attack that are no slow reader's: during
    # slowhttptest's ramp the client reuses ports ("reuses its port for a new connection" in the
    # log) and a few sessions stay with no kernel socket behind them (main keeps them too: 210
    # connections for 200 readers). Not this test's subject; reported separately.
    LEFTOVER = 20
    SLOW_LEGIT_RATE = 128 * 1024  # bytes/s: 1 MiB takes 8 s, four send deadlines

    def slow_readers(self, seconds):
        # 4 pipelined requests for 1 MiB each; a window of 512-1024 bytes, 32 bytes read every 2 s.
        return self.spawn_client(["slowhttptest", "-X", "-c", str(self.READERS), "-r", "100",
                                  "-l", str(seconds), "-k", "4", "-n", "2", "-z", "32",
                                  "-w", "512", "-y", "1024", "-p", "3",
                                  "-u", f"http://{ADV}/f/1m.bin"])

    def test_slowhttptest_slow_readers_are_reset(self):
        for node in ("primary", "backup"):
            self.lab.write_config(node, limits=self.SLOW_READ_LIMITS)
        self.start_duplex()
        mem = MemoryWatch(self.lab)
        legit = self.legit_stream()
        slow_legit = self.timed_fetch(["/f/1m.bin"], rate=self.SLOW_LEGIT_RATE, timeout=60)
        accepted0 = self.message("primary")["accepted"]
        t0 = time.monotonic()
        attack = self.slow_readers(60)
        ul.wait_for(lambda: self.message("primary")["accepted"] - accepted0 >= self.READERS, 30,
                    "every slow reader to connect",
                    details=lambda: json.dumps(self.message("primary")))
        # A large download in the middle of the attack, byte-exact.
        size, sha = self.lab.manifest["/f/64m.bin"]
        t1 = time.monotonic()
        r = self.lab.curl_fetch("/f/64m.bin", max_time=60)
        big_s = time.monotonic() - t1
        self.assertEqual((r.rc, r.status, r.size, r.sha256), (0, 200, size, sha), r.stderr)
        ul.wait_for(lambda: self.message("primary")["send_timeouts"] >= self.READERS, 40,
                    "the primary to reset every slow reader",
                    details=lambda: json.dumps(self.message("primary")))
        reset_s = time.monotonic() - t0
        # Gone from both nodes while slowhttptest still holds its end (the resets are ours).
        for node in ("primary", "backup"):
            ul.wait_for(lambda: self.status(node)["connections"] <= self.LEFTOVER, 20,
                        f"{node}: the slow readers' connections to end",
                        details=lambda: json.dumps(self.status(node)))
        self.assertIsNone(attack.poll(), "slowhttptest ended before its connections were reset")
        held_after = {n: self.status(n)["connections"] for n in ("primary", "backup")}
        rss_after = {n: round(vm(mem.pids[n])[0] / MIB, 1) for n in ("primary", "backup")}
        slow = self.timed_result(slow_legit)
        self.assert_reply(slow[0], "/f/1m.bin")
        served = self.legit_outcome(legit)
        numbers = mem.stop()
        attack.terminate()
        self.finish(attack, 20)
        p, b = self.message("primary"), self.message("backup")
        self.assertEqual(p["send_timeouts"], self.READERS, p)
        self.assertEqual(b["send_timeouts"], 0, b)  # the primary judges; the backup follows
        self.assertGreaterEqual(b["aborted"], self.READERS, b)  # the replicated Aborts
        self.assert_duplex_no_failover()
        self.assert_memory_bounded(numbers)
        self.report("slow_read", memory=numbers, legit_served=served, legit_failed=0,
                    failovers=0, readers=self.READERS, send_timeouts=p["send_timeouts"],
                    backup_aborted=b["aborted"], all_reset_after_s=round(reset_s, 1),
                    connections_after=held_after, rss_after_reset_mib=rss_after,
                    big_download_s=round(big_s, 1),
                    slow_legit_s=round(slow[0]["total_ms"] / 1000, 1),
                    slow_legit_max_gap_ms=slow[0]["max_gap_ms"])


if __name__ == "__main__":
    import unittest
    unittest.main()

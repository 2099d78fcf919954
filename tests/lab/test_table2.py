"""Table 2 of the paper, row by row: a node dies at a fault point compiled into the daemon
(docs/FAULTS.md) in a given phase of an HTTP exchange, and the client's ONE connection still gets
every reply byte-exact, with no reset and no retry. The mirror-image rows for the other role are
here too (backup idle, backup dying while it receives a reply).

Each test checks: the victim died at that point (its log names the point), the survivor is
simplex with failovers == 1, status codes, sizes and sha256 of every body, and that the client
opened exactly one connection (curl's num_connects, or the raw client's connect count).
"""
import hashlib
import json
import os
import unittest

from tests.lab.node_case import NodeCase, BINARY, URL, ul

# A small HTTP/1.1 client run in the client namespace. It opens exactly ONE TCP connection and
# follows a plan of steps, so a test can pipeline requests, pause between requests on the same
# connection (waiting for a file the test creates: an event, not a sleep) and check every reply.
#   {"op": "send", "reqs": [{"method", "path", "headers", "body_file", "body_hex"}]}  one write
#   {"op": "read", "methods": ["GET", ...]}   read one reply per method (HEAD: no body)
#   {"op": "touch", "file": F} / {"op": "wait", "file": F}
#   {"op": "eof"}                              expect the server to close the connection cleanly
# Prints {"ok", "connects", "local", "results": [...], "eof", "error"}.
CLIENT = r'''
import hashlib, json, os, socket, sys, time
plan = json.loads(sys.argv[1])
out = {"ok": False, "connects": 0, "results": [], "eof": None}
def emit(): print(json.dumps(out), flush=True)
try:
    s = socket.create_connection((plan["host"], plan.get("port", 80)), timeout=plan.get("timeout", 30))
    out["connects"] += 1
    out["local"] = "%s:%d" % s.getsockname()
    f = s.makefile("rb")
    def line():
        l = f.readline(65537)
        if not l.endswith(b"\n"):
            raise ConnectionError("connection ended inside a header line: %r" % l)
        return l.rstrip(b"\r\n").decode("latin-1")
    def read_reply(method):
        interim = []
        while True:
            t0 = time.monotonic()
            st = line().split(" ", 2)
            code = int(st[1])
            hdrs = {}
            while True:
                l = line()
                if not l:
                    break
                k, _, v = l.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            if 100 <= code < 200 and code != 101:
                interim.append(code)
                continue
            break
        h = hashlib.sha256(); size = 0; gap = 0.0; last = time.monotonic(); keep = bytearray()
        def take(b):
            nonlocal size, gap, last
            now = time.monotonic(); gap = max(gap, now - last); last = now
            h.update(b); size += len(b)
            if len(keep) < 4096: keep.extend(b[:4096 - len(keep)])
        if method == "HEAD" or code in (204, 304):
            pass
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            while True:
                n = int(line().split(";")[0], 16)
                if n == 0:
                    while line():
                        pass
                    break
                while n:
                    b = f.read1(min(n, 65536))
                    if not b: raise ConnectionError("connection ended inside a chunk")
                    take(b); n -= len(b)
                line()
        elif "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while n:
                b = f.read1(min(n, 65536))
                if not b: raise ConnectionError("connection ended inside a body (%d left)" % n)
                take(b); n -= len(b)
        else:
            while True:
                b = f.read1(65536)
                if not b: break
                take(b)
        return {"method": method, "status": code, "interim": interim, "headers": hdrs, "size": size,
                "sha256": h.hexdigest(), "max_gap_ms": round(gap * 1000, 2),
                "total_ms": round((time.monotonic() - t0) * 1000, 2),
                "text": keep.decode("latin-1") if size <= 4096 else None}
    for step in plan["steps"]:
        op = step["op"]
        if op == "send":
            wire = bytearray()
            for r in step["reqs"]:
                body = b""
                if r.get("body_file"):
                    with open(r["body_file"], "rb") as bf: body = bf.read()
                elif r.get("body_hex"):
                    body = bytes.fromhex(r["body_hex"])
                hd = dict(r.get("headers", {}))
                hd.setdefault("Host", plan["host"])
                if body or r["method"] in ("POST", "PUT"):
                    hd.setdefault("Content-Length", str(len(body)))
                wire += ("%s %s HTTP/1.1\r\n" % (r["method"], r["path"])).encode()
                wire += "".join("%s: %s\r\n" % kv for kv in hd.items()).encode() + b"\r\n" + body
            s.sendall(bytes(wire))
        elif op == "read":
            for m in step["methods"]:
                out["results"].append(read_reply(m))
        elif op == "touch":
            open(step["file"], "w").close()
        elif op == "wait":
            deadline = time.monotonic() + plan.get("timeout", 30)
            while not os.path.exists(step["file"]):
                if time.monotonic() > deadline: raise TimeoutError("waiting for " + step["file"])
                time.sleep(0.005)  # polling interval for the test's go-file
        elif op == "eof":
            out["eof"] = f.read1(1) == b""
    out["ok"] = True
except Exception as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
emit()
'''


class FaultCase(NodeCase):
    """Helpers shared by the Table 2 and HTTP-feature failover tests."""

    # ---- the victim and the survivor
    def died_at(self, node, point, timeout=20):
        """The node's daemon is gone, and it died at `point` (the log line fault::crash_now writes)."""
        self.wait_dead(node, timeout)
        log = self.lab.log_tail(node, "daemon", 20000)
        self.assertIn(f"fault: {point} reached", log, f"{node} did not die at {point}")

    def crash_cmd(self, node):
        """`understudy crash --config F` in the node: it dies now, like a failed host."""
        self.lab.run_in(node, [BINARY, "crash", "--config", self.lab.config_path(node)], check=False)
        self.died_at(node, "control command crash")

    def survivor(self, node):
        st = self.wait_survivor(node)
        self.assertEqual(st["mode"], "simplex")
        self.assertEqual(st["failovers"], 1)
        self.assertTrue(st["front"])
        return st

    def wait_relayed(self, n):
        """Wait until the backup relayed at least n client packets to the primary."""
        ul.wait_for(lambda: (self.status("backup") or {}).get("packet", {}).get("relayed", 0) >= n,
                    10, f"backup to relay {n} client packets")

    # ---- curl (one connection: num_connects summed over the transfers must be 1)
    def curl(self, urls, extra=(), data_file=None, timeout=40):
        """curl every URL on one connection; returns [(status, size, sha256, body)] per URL."""
        d = self.lab.node_dir("client")
        os.makedirs(d, exist_ok=True)
        args = ["curl", "-sS", "--max-time", str(timeout - 5), "-H", "Expect:",
                "-w", "%{http_code} %{num_connects} %{size_download}\\n"]
        if data_file:
            args += ["--data-binary", "@" + data_file, "-H", "Content-Type: application/octet-stream"]
        args += list(extra)
        outs = []
        for i, u in enumerate(urls):
            out = os.path.join(d, f"curl-{i}.out")
            if os.path.exists(out):
                os.unlink(out)
            outs.append(out)
            args += ["-o", out, URL + u]
        cp = self.lab.run_in("client", args, timeout=timeout)
        self.assertEqual(cp.returncode, 0, f"curl failed: {cp.stderr!r}")
        lines = cp.stdout.decode().split("\n")
        self.assertGreaterEqual(len(lines), len(urls), cp.stdout)
        res, connects = [], 0
        for line, out in zip(lines, outs):
            code, nc, size = (int(x) for x in line.split())
            connects += nc
            body = b""
            if os.path.exists(out):
                with open(out, "rb") as f:
                    body = f.read()
            self.assertEqual(len(body), size)
            res.append((code, size, hashlib.sha256(body).hexdigest(), body))
        self.assertEqual(connects, 1, f"curl made {connects} connections (a retry?): {cp.stderr!r}")
        self.last_curl_stderr = cp.stderr.decode(errors="replace")
        return res

    def assert_file(self, r, path):
        size, sha = self.lab.manifest[path]
        self.assertEqual(r[0], 200, path)
        self.assertEqual((r[1], r[2]), (size, sha), path)

    def assert_echo(self, r, size, sha):
        self.assertEqual(r[0], 200, r[3][:300])
        j = json.loads(r[3])
        self.assertEqual((j["length"], j["sha256"]), (size, sha), j)
        return j

    # ---- the plan-driven raw client (one socket)
    def client(self, steps, timeout=30):
        script = os.path.join(self.lab.workdir, "raw_client.py")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(CLIENT)
        plan = {"host": ul.ADVERTISED_IP, "port": 80, "timeout": timeout, "steps": steps}
        return self.spawn_client(["/usr/bin/python3", script, json.dumps(plan)])

    def client_result(self, p, timeout=60):
        rc, out, err = self.finish(p, timeout)
        try:
            res = json.loads(out.decode())
        except ValueError:
            self.fail(f"raw client printed no JSON (rc {rc}): {out!r} {err!r}")
        self.assertTrue(res["ok"], f"client failed: {res}")
        self.assertEqual(res["connects"], 1)
        return res

    def assert_raw_file(self, r, path, status=200):
        size, sha = self.lab.manifest[path]
        self.assertEqual(r["status"], status, r)
        self.assertEqual((r["size"], r["sha256"]), (size, sha), r)

    @staticmethod
    def get(path, **headers):
        return {"method": "GET", "path": path, "headers": headers}

    def stall(self, what, ms):
        print(f"\n{self.id().rsplit('.', 1)[-1]}: {what}: longest stall {ms} ms", flush=True)


class Table2CrashTest(FaultCase):
    # ------------------------------------------------------------------ backup rows
    def test_backup_incomplete_request(self):
        """Backup dies holding part of a request: the primary takes over the address, the client
        resends what the primary never acknowledged, the primary answers the whole request."""
        self.start_duplex()
        body, sha = self.lab.make_body(1 << 20)
        # The 4th read of a part of the body: inside it even if the backup reads 64 KiB at a time
        # (at hit 20 a run whose reads were that large finished the body first).
        self.arm("backup", "backup.request_partial:4")
        (r,) = self.curl(["/echo"], data_file=body)
        self.assert_echo(r, 1 << 20, sha)
        self.died_at("backup", "backup.request_partial")
        self.survivor("primary")

    def test_backup_complete_not_relayed(self):
        """Backup got a complete one-segment request and dies before relaying it: the primary
        never saw it, takes over, and answers the client's retransmission."""
        self.start_duplex()
        body, sha = self.lab.make_body(700, seed=b"small")  # headers + body fit one segment
        ready, go = self.ready_file("connected"), self.ready_file("go")
        p = self.client([{"op": "touch", "file": ready}, {"op": "wait", "file": go},
                         {"op": "send", "reqs": [{"method": "POST", "path": "/echo", "body_file": body}]},
                         {"op": "read", "methods": ["POST"]},
                         {"op": "send", "reqs": [self.get("/f/100k.bin")]},
                         {"op": "read", "methods": ["GET"]}])
        self.wait_file(ready)
        self.wait_relayed(2)  # SYN and the handshake's ACK went through: the next is the request
        self.arm("backup", "backup.before_relay")
        open(go, "w").close()
        res = self.client_result(p)
        self.died_at("backup", "backup.before_relay")
        self.survivor("primary")
        r0, r1 = res["results"]
        self.assertEqual(r0["status"], 200, r0)
        j = json.loads(r0["text"])
        self.assertEqual((j["length"], j["sha256"]), (700, sha))
        self.assert_raw_file(r1, "/f/100k.bin")
        self.stall("request not relayed", r0["total_ms"])

    def test_backup_after_relay(self):
        """Backup dies after it relayed (and framed) a complete request: the primary has it all,
        answers, takes over the address and serves the next request on the same connection."""
        self.start_duplex()
        body, sha = self.lab.make_body(1 << 20)
        self.arm("backup", "backup.request_complete")
        r0, r1 = self.curl(["/echo", "/echo"], data_file=body)
        self.assert_echo(r0, 1 << 20, sha)
        self.assert_echo(r1, 1 << 20, sha)
        self.died_at("backup", "backup.request_complete")
        self.survivor("primary")

    def test_backup_reply_received(self):
        """Mirror row: the backup dies while it receives the replicated reply; the primary stops
        waiting for its acks, goes simplex and sends the rest of the reply."""
        self.start_duplex()
        self.arm("backup", "backup.reply_received:10")
        r0, r1 = self.curl(["/f/1m.bin", "/f/10k.bin"])
        self.assert_file(r0, "/f/1m.bin")
        self.assert_file(r1, "/f/10k.bin")
        self.died_at("backup", "backup.reply_received")
        self.survivor("primary")

    def test_backup_idle(self):
        """Mirror row: backup dies with no request or reply in progress on a kept-alive
        connection; the next request on it and a new connection are served by the primary."""
        self.idle_crash("backup", "primary")

    # ------------------------------------------------------------------ primary rows
    def test_primary_before_ack(self):
        """Primary dies mid-upload, before its kernel acknowledged a relayed data packet: the
        backup takes over, acknowledges what the primary never did, gets the rest, answers."""
        self.start_duplex()
        body, sha = self.lab.make_body(1 << 20)
        self.arm("primary", "primary.before_ack:200")  # ~200 of ~725 data segments
        (r,) = self.curl(["/echo"], data_file=body)
        j = self.assert_echo(r, 1 << 20, sha)
        self.assertEqual(j["node"], "backup")
        self.died_at("primary", "primary.before_ack")
        self.survivor("backup")

    def test_primary_before_ack_complete(self):
        """Primary dies when the last (only) segment of a complete request reached it, before it
        could acknowledge it: the backup takes over and processes the request."""
        self.start_duplex()
        ready, go = self.ready_file("connected"), self.ready_file("go")
        p = self.client([{"op": "touch", "file": ready}, {"op": "wait", "file": go},
                         {"op": "send", "reqs": [self.get("/f/100k.bin")]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "send", "reqs": [self.get("/f/5k.bin")]},
                         {"op": "read", "methods": ["GET"]}])
        self.wait_file(ready)
        self.wait_relayed(2)
        self.arm("primary", "primary.before_ack")
        open(go, "w").close()
        res = self.client_result(p)
        self.died_at("primary", "primary.before_ack")
        self.survivor("backup")
        self.assert_raw_file(res["results"][0], "/f/100k.bin")
        self.assert_raw_file(res["results"][1], "/f/5k.bin")
        self.stall("complete request not acked", res["results"][0]["total_ms"])

    def test_primary_acked_no_reply_copy(self):
        """Primary acknowledged a complete request and read reply bytes from its server, but dies
        before replicating them: the backup processes its cached copy and answers."""
        self.start_duplex()
        ready, go = self.ready_file("warm"), self.ready_file("go")
        p = self.client([{"op": "send", "reqs": [self.get("/f/1k.bin")]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "touch", "file": ready}, {"op": "wait", "file": go},
                         {"op": "send", "reqs": [self.get("/echo/slow?ms=300")]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "send", "reqs": [self.get("/f/1m.bin")]},
                         {"op": "read", "methods": ["GET"]}])
        self.wait_file(ready)  # warm-up reply read with the point disarmed
        self.arm("primary", "primary.reply_read")
        open(go, "w").close()
        res = self.client_result(p)
        self.died_at("primary", "primary.reply_read")
        self.survivor("backup")
        r0, r1, r2 = res["results"]
        self.assert_raw_file(r0, "/f/1k.bin")
        self.assertEqual(r1["status"], 200, r1)
        j = json.loads(r1["text"])
        self.assertEqual(j, {"slept_ms": 300, "node": "backup"})  # regenerated by the backup
        self.assert_raw_file(r2, "/f/1m.bin")
        self.stall("reply regenerated", r1["total_ms"])

    def test_primary_acked_no_reply_copy_file(self):
        """Same row with a 1 MiB file: no byte of it reached the backup; the backup serves it."""
        self.start_duplex()
        self.arm("primary", "primary.reply_read")
        (r,) = self.curl(["/f/1m.bin"])
        self.assert_file(r, "/f/1m.bin")
        self.died_at("primary", "primary.reply_read")
        self.survivor("backup")

    def test_primary_reply_copied_not_sent(self):
        """Primary dies after the backup acknowledged reply bytes the client has not got: the
        backup sends its stored copy (the segments it kept) and the rest of the reply."""
        self.start_duplex()
        self.arm("primary", "primary.reply_acked:5")
        r0, r1 = self.curl(["/f/1m.bin", "/f/10k.bin"])
        self.assert_file(r0, "/f/1m.bin")
        self.assert_file(r1, "/f/10k.bin")
        self.died_at("primary", "primary.reply_acked")
        st = self.survivor("backup")
        self.assertEqual(st["message"]["regen_mismatch"], 0)

    def test_primary_reply_written_mid(self):
        """Primary dies mid-reply, some bytes written toward the client: the backup finishes it."""
        self.start_duplex()
        self.arm("primary", "primary.reply_written:4")
        r0, r1 = self.curl(["/f/1m.bin", "/f/100k.bin"])
        self.assert_file(r0, "/f/1m.bin")
        self.assert_file(r1, "/f/100k.bin")
        self.died_at("primary", "primary.reply_written")
        st = self.survivor("backup")
        self.assertEqual(st["message"]["regen_mismatch"], 0)

    def test_primary_idle(self):
        """Primary dies with no HTTP request or reply in progress: the backup handles all future
        requests, on the kept-alive connection and on new ones."""
        self.idle_crash("primary", "backup")

    # ------------------------------------------------------------------ shared
    def idle_crash(self, victim, survivor):
        self.start_duplex()
        ready, go = self.ready_file("idle"), self.ready_file("go")
        p = self.client([{"op": "send", "reqs": [self.get("/f/100k.bin")]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "touch", "file": ready}, {"op": "wait", "file": go},
                         {"op": "send", "reqs": [self.get("/f/1m.bin")]},
                         {"op": "read", "methods": ["GET"]}])
        self.wait_file(ready)
        self.crash_cmd(victim)
        open(go, "w").close()
        res = self.client_result(p)
        self.survivor(survivor)
        r0, r1 = res["results"]
        self.assert_raw_file(r0, "/f/100k.bin")
        self.assert_raw_file(r1, "/f/1m.bin")
        self.stall(f"first request after {victim} crash", r1["total_ms"])
        # A new connection after the failover.
        (r,) = self.curl(["/f/10k.bin"])
        self.assert_file(r, "/f/10k.bin")


if __name__ == "__main__":
    unittest.main()

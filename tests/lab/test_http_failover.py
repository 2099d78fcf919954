"""HTTP features across a failover: pipelining, keep-alive sequences, chunked and
`Expect: 100-continue` uploads, HEAD, 304 revalidation and `Connection: close`. Every test uses
ONE client connection, checks every body byte-exact (size + sha256) and that the victim died at
its fault point and the survivor is simplex with failovers == 1.
"""
import unittest

from tests.lab.test_table2 import FaultCase

PIPE = ["/f/100k.bin", "/f/1m.bin", "/f/10k.bin", "/f/5k.bin", "/f/0.bin"]


class HttpFailoverTest(FaultCase):
    # ------------------------------------------------------------------ pipelining
    def pipelined(self, point):
        self.start_duplex()
        self.arm("primary", point)
        p = self.client([{"op": "send", "reqs": [self.get(x) for x in PIPE]},  # one write
                         {"op": "read", "methods": ["GET"] * len(PIPE)}])
        res = self.client_result(p)
        self.died_at("primary", point.split(":")[0])
        st = self.survivor("backup")
        self.assertEqual(len(res["results"]), len(PIPE))
        for r, path in zip(res["results"], PIPE):
            self.assert_raw_file(r, path)
        self.stall(f"pipelined, {point}", max(r["max_gap_ms"] for r in res["results"]))
        return st

    def test_pipelined_primary_reply_written(self):
        """5 GETs in one write; the primary dies mid-way through writing the replies."""
        st = self.pipelined("primary.reply_written:6")
        self.assertEqual(st["message"]["regen_mismatch"], 0)

    def test_pipelined_primary_reply_read(self):
        """5 GETs in one write; the primary dies reading a reply it has not replicated."""
        self.pipelined("primary.reply_read:3")

    # ------------------------------------------------------------------ keep-alive sequence
    def test_keepalive_sequence_primary_crash(self):
        """5 GETs one after another on one keep-alive connection; the primary crashes after the
        2nd reply, the 3rd request goes out at once (during failure detection)."""
        self.start_duplex()
        paths = ["/f/100k.bin", "/f/1k.bin", "/f/1m.bin", "/f/10k.bin", "/f/5k.bin"]
        ready, go = self.ready_file("two"), self.ready_file("go")
        steps = []
        for i, path in enumerate(paths):
            if i == 2:
                steps += [{"op": "touch", "file": ready}, {"op": "wait", "file": go}]
            steps += [{"op": "send", "reqs": [self.get(path)]}, {"op": "read", "methods": ["GET"]}]
        p = self.client(steps)
        self.wait_file(ready)
        self.crash_cmd("primary")
        open(go, "w").close()
        res = self.client_result(p)
        self.survivor("backup")
        for r, path in zip(res["results"], paths):
            self.assert_raw_file(r, path)
        self.assertEqual(len(res["results"]), 5)
        self.stall("keep-alive, 3rd request after crash", res["results"][2]["total_ms"])

    # ------------------------------------------------------------------ chunked uploads
    def chunked(self, size, victim, point):
        self.start_duplex()
        body, sha = self.lab.make_body(size, seed=b"chunked")
        self.arm(victim, point)
        r0, r1 = self.curl(["/echo", "/echo"], data_file=body,
                           extra=["-H", "Transfer-Encoding: chunked"])
        j = self.assert_echo(r0, size, sha)
        self.assert_echo(r1, size, sha)
        self.died_at(victim, point.split(":")[0])
        self.survivor("backup" if victim == "primary" else "primary")
        return j

    def test_chunked_1m_primary_crash(self):
        j = self.chunked(1 << 20, "primary", "primary.before_ack:200")
        self.assertEqual(j["node"], "backup")

    def test_chunked_8m_primary_crash(self):
        j = self.chunked(8 << 20, "primary", "primary.before_ack:2500")
        self.assertEqual(j["node"], "backup")

    def test_chunked_1m_backup_crash(self):
        self.chunked(1 << 20, "backup", "backup.request_partial:20")

    def test_chunked_8m_backup_crash(self):
        self.chunked(8 << 20, "backup", "backup.request_partial:60")

    # ------------------------------------------------------------------ HEAD, 304
    def test_head_across_primary_crash(self):
        """Warm-up GET; then HEAD (the primary dies reading its reply): the backup answers it with
        headers only (same ETag, Content-Length of the file) and the next GET is byte-exact."""
        self.start_duplex()
        ready, go = self.ready_file("warm"), self.ready_file("go")
        p = self.client([{"op": "send", "reqs": [self.get("/f/1m.bin")]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "touch", "file": ready}, {"op": "wait", "file": go},
                         {"op": "send", "reqs": [{"method": "HEAD", "path": "/f/1m.bin", "headers": {}}]},
                         {"op": "read", "methods": ["HEAD"]},
                         {"op": "send", "reqs": [self.get("/f/1k.bin")]},
                         {"op": "read", "methods": ["GET"]}])
        self.wait_file(ready)
        self.arm("primary", "primary.reply_read")
        open(go, "w").close()
        res = self.client_result(p)
        self.died_at("primary", "primary.reply_read")
        self.survivor("backup")
        warm, head, tail = res["results"]
        self.assert_raw_file(warm, "/f/1m.bin")
        self.assertEqual(head["status"], 200, head)
        self.assertEqual(head["size"], 0, head)
        self.assertEqual(int(head["headers"]["content-length"]), 1 << 20, head)
        self.assertEqual(head["headers"]["etag"], warm["headers"]["etag"])
        self.assert_raw_file(tail, "/f/1k.bin")

    def test_304_across_primary_crash(self):
        """If-None-Match with the ETag: the primary dies reading its 304; the backup answers 304
        (no body) and the next GET on the connection is byte-exact."""
        self.start_duplex()
        ready, go = self.ready_file("warm"), self.ready_file("go")
        # The plan is fixed up front, so the ETag is computed the way nginx makes it:
        # "<mtime hex>-<size hex>", identical on both nodes (the lab fixes the mtime).
        etag = '"%x-%x"' % (1700000000, 1 << 10)
        p = self.client([{"op": "send", "reqs": [self.get("/f/1k.bin")]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "touch", "file": ready}, {"op": "wait", "file": go},
                         {"op": "send", "reqs": [self.get("/f/1k.bin", **{"If-None-Match": etag})]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "send", "reqs": [self.get("/f/100k.bin")]},
                         {"op": "read", "methods": ["GET"]}])
        self.wait_file(ready)
        self.arm("primary", "primary.reply_read")
        open(go, "w").close()
        res = self.client_result(p)
        self.died_at("primary", "primary.reply_read")
        self.survivor("backup")
        warm, nm, tail = res["results"]
        self.assert_raw_file(warm, "/f/1k.bin")
        self.assertEqual(warm["headers"]["etag"], etag)
        self.assertEqual(nm["status"], 304, nm)
        self.assertEqual(nm["size"], 0, nm)
        self.assert_raw_file(tail, "/f/100k.bin")

    # ------------------------------------------------------------------ Expect, Connection: close
    def test_expect_100_continue_primary_crash(self):
        """curl waits for `100 Continue`, uploads 1 MiB, the primary dies mid-upload."""
        self.start_duplex()
        size = 1 << 20
        body, sha = self.lab.make_body(size, seed=b"expect")
        self.arm("primary", "primary.before_ack:200")
        (r,) = self.curl(["/echo"], data_file=body,
                         extra=["-v", "-H", "Expect: 100-continue", "--expect100-timeout", "30"])
        self.assertIn("HTTP/1.1 100 Continue", self.last_curl_stderr)
        self.assertEqual(self.last_curl_stderr.count("HTTP/1.1 100 Continue"), 1)
        j = self.assert_echo(r, size, sha)
        self.assertEqual(j["node"], "backup")
        self.died_at("primary", "primary.before_ack")
        self.survivor("backup")

    def test_expect_100_continue_primary_crash_before_continue(self):
        """The primary dies reading the `100 Continue` itself (before replicating it): the backup
        must send it (once), take the body and answer."""
        self.start_duplex()
        size = 1 << 20
        body, sha = self.lab.make_body(size, seed=b"expect")
        self.arm("primary", "primary.reply_read")
        (r,) = self.curl(["/echo"], data_file=body,
                         extra=["-v", "-H", "Expect: 100-continue", "--expect100-timeout", "30"])
        self.assertEqual(self.last_curl_stderr.count("HTTP/1.1 100 Continue"), 1, self.last_curl_stderr)
        self.assert_echo(r, size, sha)
        self.died_at("primary", "primary.reply_read")
        self.survivor("backup")

    def test_connection_close_primary_crash(self):
        """`Connection: close` GET of 1 MiB; the primary dies mid-reply; the backup finishes the
        reply and closes the connection cleanly (FIN, no reset)."""
        self.start_duplex()
        self.arm("primary", "primary.reply_written:4")
        p = self.client([{"op": "send", "reqs": [self.get("/f/1m.bin", Connection="close")]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "eof"}])
        res = self.client_result(p)
        self.died_at("primary", "primary.reply_written")
        self.survivor("backup")
        (r,) = res["results"]
        self.assert_raw_file(r, "/f/1m.bin")
        self.assertEqual(r["headers"].get("connection"), "close")
        self.assertTrue(res["eof"], res)
        self.stall("Connection: close mid-reply", r["max_gap_ms"])

    def test_connection_close_curl_primary_crash(self):
        """The same with curl: `Connection: close`, the primary dies before replicating the reply."""
        self.start_duplex()
        self.arm("primary", "primary.reply_read")
        (r,) = self.curl(["/f/1m.bin"], extra=["-H", "Connection: close"])
        self.assert_file(r, "/f/1m.bin")
        self.died_at("primary", "primary.reply_read")
        self.survivor("backup")


if __name__ == "__main__":
    unittest.main()

"""Regressions found by the chaos harness (chaos/run), each made deterministic here."""
import json
import os
import unittest

from tests.lab.node_case import NodeCase, ul

# One connection, a POST sent as two segments (headers, then the body), the reply read whole.
POST_TWO_SEGMENTS = r"""
import json, socket, sys
body = b"b" * 777
s = socket.create_connection(("198.18.0.100", 80), timeout=20)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 777\r\n\r\n")
open(sys.argv[1], "w").close()          # headers sent: the test arms the drop for the body now
open(sys.argv[2]).read()                # a FIFO: blocks until the test says "armed"
s.sendall(body)
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(65536)
head, _, rest = data.partition(b"\r\n\r\n")
length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
while len(rest) < length:
    rest += s.recv(65536)
print(json.dumps({"status": head.split(b" ")[1].decode(), "reply": json.loads(rest)}))
"""

# One keep-alive connection: GET, then wait for the test (a FIFO), then GET again; both bodies'
# sha256 printed.
TWO_GETS = r"""
import hashlib, http.client, json, sys
c = http.client.HTTPConnection("198.18.0.100", 80, timeout=20)
out = []
for i, path in enumerate(sys.argv[2:]):
    if i:
        open(sys.argv[1]).read()
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    out.append({"status": r.status, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()})
print(json.dumps(out))
"""


class ChaosRegressionTest(NodeCase):
    def test_new_request_after_takeover_on_idle_connection(self):
        """chaos run of the first fix: a keep-alive connection with nothing in progress at the
        takeover, then a new request on it: the backup lost track of where its request stream
        stood, dropped the request's bytes and the client timed out."""
        self.start_duplex()
        gate = self.ready_file("gate")
        os.mkfifo(gate)
        p = self.spawn_client(["/usr/bin/python3", "-c", TWO_GETS, gate, "/f/100k.bin", "/f/1m.bin"])
        ul.wait_for(lambda: (self.status("primary") or {}).get("message", {}).get("replies") == 1,
                    20, "the first reply")
        self.lab.crash("primary")
        self.wait_survivor("backup")
        with open(gate, "w") as f:
            f.write("go")
        rc, out, err = self.finish(p, timeout=60)
        self.assertEqual(rc, 0, err)
        first, second = json.loads(out)
        for r, path in ((first, "/f/100k.bin"), (second, "/f/1m.bin")):
            self.assertEqual((r["status"], r["size"], r["sha256"]), (200,) + self.lab.manifest[path])

    def test_request_answered_before_the_backup_had_all_of_it(self):
        """chaos seed 1407256817: the primary answered a request whose tail the backup's kernel
        had not received yet (its copy of the packet was dropped there), then died. The backup
        held the replicated reply but re-sent the request's head to its own server, whose answer
        matched no request: the client got a reset. The backup must send the held reply and
        never run the request again."""
        self.start_duplex()
        headers_sent = self.ready_file("headers-sent")
        armed = self.ready_file("armed")
        os.mkfifo(armed)
        p = self.spawn_client(["/usr/bin/python3", "-c", POST_TWO_SEGMENTS, headers_sent, armed])
        self.wait_file(headers_sent)
        # The body segment (IP length 20 + 20 + 777) is lost inside the backup only: its packet
        # layer has already relayed it to the primary when its own kernel drops it.
        for cmd in ("add table ip chaosreg",
                    "add chain ip chaosreg in { type filter hook input priority 0; }",
                    'add rule ip chaosreg in iifname "understudy0" ip length 817 counter drop'):
            self.lab.run_in("backup", ["nft"] + cmd.split(" ") if "{" not in cmd else ["nft", cmd],
                            check=True)
        # The primary dies once the backup holds its reply, before the client gets it.
        self.arm("primary", "primary.reply_acked")
        with open(armed, "w") as f:
            f.write("armed")
        self.wait_dead("primary")
        self.lab.run_in("backup", ["nft", "delete", "table", "ip", "chaosreg"], check=True)
        self.wait_survivor("backup")
        rc, out, err = self.finish(p, timeout=60)
        self.assertEqual(rc, 0, err)
        res = json.loads(out)
        self.assertEqual(res["status"], "200")
        self.assertEqual(res["reply"]["length"], 777)
        self.assertEqual(res["reply"]["node"], "primary", "the reply the dead primary made")
        st = self.status("backup")
        self.assertEqual(st["message"]["upstream_errors"], 0, st)
        self.assertEqual(st["message"]["aborted"], 0, st)


if __name__ == "__main__":
    unittest.main()

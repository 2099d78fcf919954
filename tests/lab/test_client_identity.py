"""The client's identity reaches the web server (issue 12, items 4 and 5; docs/MESSAGE_LAYER.md,
"The client's identity").

nginx in the lab logs what it learns of each request's client (LabOptions.nginx_identity:
logs/identity.log with $remote_addr, $http_x_forwarded_for, $http_x_real_ip,
$proxy_protocol_addr/port and $http_request_id). Each test sends a request that the primary's
server answers, then one during which the primary dies after its server ran it (fault point
primary.reply_read, Table 2's "primary fails after it acknowledges a complete request but before
it sends a full copy of the reply"), so the backup's server runs it again: both nodes' logs must
show the lab client's real address, and the re-run must carry what the original carried.

The exactly-once tests run examples/exactly_once_backend.py on both nodes as the web server,
both instances sharing one SQLite file in the lab's workdir (network namespaces share the host's
filesystem), and POST across the same crash: without request ids the POST runs twice, with them
once, and the client gets the one correct reply either way.
"""
import hashlib
import json
import os
import re
import sqlite3

from tests.lab.node_case import BINARY, ul
from tests.lab.test_table2 import FaultCase

CLIENT_IP = ul.NODE_IPS["client"]
ID_RE = re.compile(r"^[0-9a-f]{32}$")
BACKEND = os.path.join(ul.REPO_ROOT, "examples", "exactly_once_backend.py")
BACKEND_PORT = 9100
# What a client may send to pass for someone else; none of it may reach the server as trusted.
FORGED = {"X-Forwarded-For": "10.6.6.6", "X-Real-IP": "10.6.6.6", "Request-Id": "forged"}


class ClientIdentityTest(FaultCase):
    def setUp(self):
        # NodeCase's, with nginx's identity log and PROXY protocol listener; each test writes
        # its own configs.
        self.lab = ul.Lab(binary=BINARY, nginx_identity=True)
        self.addCleanup(self.lab.down)
        self.lab.up()
        self.addCleanup(self._logs_on_failure)
        self.lab.keygen()
        self.background = []

    def configure(self, **node):
        for n in ("primary", "backup"):
            self.lab.write_config(n, **{"node_" + k: v for k, v in node.items()})

    def logged(self, node, path):
        """nginx's identity.log lines of `node` for GET/POST `path` (waits for one)."""
        def lines():
            return [e for e in self.lab.identity_log(node) if e["request"].split(" ")[1:2] == [path]]
        ul.wait_for(lines, 10, f"{node}'s nginx to log {path}")
        return lines()

    def answered_then_rerun(self, headers=None):
        """GET /f/1k.bin (answered by the primary), then GET /f/5k.bin during which the primary
        dies after its server ran it: the backup runs it again. One connection; returns the
        raw client's result."""
        self.start_duplex()
        ready, go = self.ready_file("warm"), self.ready_file("go")
        h = headers or {}
        p = self.client([{"op": "send", "reqs": [self.get("/f/1k.bin", **h)]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "touch", "file": ready}, {"op": "wait", "file": go},
                         {"op": "send", "reqs": [self.get("/f/5k.bin", **h)]},
                         {"op": "read", "methods": ["GET"]}])
        self.wait_file(ready)
        self.arm("primary", "primary.reply_read")
        open(go, "w").close()
        res = self.client_result(p)
        self.died_at("primary", "primary.reply_read")
        self.survivor("backup")
        self.assert_raw_file(res["results"][0], "/f/1k.bin")
        self.assert_raw_file(res["results"][1], "/f/5k.bin")
        return res

    def test_x_forwarded_for_on_both_nodes_and_the_rerun(self):
        self.configure(client_address="x-forwarded-for", request_id_header="Request-Id")
        self.answered_then_rerun(FORGED)
        (first,) = self.logged("primary", "/f/1k.bin")
        (ran,) = self.logged("primary", "/f/5k.bin")
        (rerun,) = self.logged("backup", "/f/5k.bin")
        self.assertEqual(self.logged_paths("backup", "/f/"), ["/f/0.bin", "/f/5k.bin"])  # 0: lab.up()
        for e in (first, ran, rerun):
            self.assertEqual(e["remote_addr"], "127.0.0.1", e)  # the connection is ours
            self.assertEqual(e["x_real_ip"], CLIENT_IP, e)  # the client's was removed
            # A client's own X-Forwarded-For stays, ours is appended: the last one is the truth.
            self.assertEqual([a.strip() for a in e["x_forwarded_for"].split(",")],
                             ["10.6.6.6", CLIENT_IP], e)
            self.assertRegex(e["request_id"], ID_RE)  # ours, not the client's "forged"
        self.assertNotEqual(first["request_id"], ran["request_id"])
        # The backup's re-run is the primary's request, byte for byte in what the server sees.
        self.assertEqual({k: rerun[k] for k in ("x_forwarded_for", "x_real_ip", "request_id")},
                         {k: ran[k] for k in ("x_forwarded_for", "x_real_ip", "request_id")})

    def test_proxy_v2_on_both_nodes_and_the_rerun(self):
        self.configure(client_address="proxy-v2", server=f"127.0.0.1:{ul.NGINX_PROXY_PORT}")
        res = self.answered_then_rerun()
        client_port = res["local"].rsplit(":", 1)[1]
        entries = (self.logged("primary", "/f/1k.bin") + self.logged("primary", "/f/5k.bin") +
                   self.logged("backup", "/f/5k.bin"))
        self.assertEqual(len(entries), 3, entries)
        for e in entries:
            self.assertEqual((e["proxy_protocol_addr"], e["proxy_protocol_port"]),
                             (CLIENT_IP, client_port), e)
            self.assertEqual(e["remote_addr"], "127.0.0.1", e)
            self.assertEqual((e["x_forwarded_for"], e["request_id"]), ("-", "-"), e)

    def logged_paths(self, node, prefix):
        paths = [e["request"].split(" ")[1] for e in self.lab.identity_log(node)]
        return [p for p in paths if p.startswith(prefix)]

    # ---- exactly once (examples/exactly_once_backend.py)
    def post_across_primary_crash(self, request_id_header, headers):
        db = os.path.join(self.lab.workdir, "once.db")
        for node in ("primary", "backup"):
            self.lab.spawn(node, "once", ["/usr/bin/python3", BACKEND, "--listen",
                                          f"127.0.0.1:{BACKEND_PORT}", "--db", db, "--name", node],
                           "once.log")
            self.lab.wait_http(node, "127.0.0.1", BACKEND_PORT, "/executions", want_2xx=True)
        self.configure(server=f"127.0.0.1:{BACKEND_PORT}", request_id_header=request_id_header)
        self.start_duplex()
        body = b'{"from": "alice", "to": "bob", "cents": 1250}'
        self.arm("primary", "primary.reply_read")
        p = self.client([{"op": "send", "reqs": [{"method": "POST", "path": "/pay",
                                                 "headers": headers,
                                                 "body_hex": body.hex()}]},
                         {"op": "read", "methods": ["POST"]}])
        res = self.client_result(p)
        self.died_at("primary", "primary.reply_read")
        self.survivor("backup")
        # The one reply, byte-exact: the back-end's reply is a function of the request alone.
        want = json.dumps({"path": "/pay", "bytes": len(body),
                           "sha256": hashlib.sha256(body).hexdigest()}, sort_keys=True)
        (r,) = res["results"]
        self.assertEqual(r["status"], 200, r)
        self.assertEqual(r["headers"], {"content-type": "application/json",
                                        "content-length": str(len(want))}, r)
        self.assertEqual(r["text"], want, r)
        with sqlite3.connect(db) as c:
            return c.execute("SELECT id, instance FROM executions ORDER BY n").fetchall()

    def test_post_rerun_without_ids_runs_twice(self):
        runs = self.post_across_primary_crash("", {})
        self.assertEqual(runs, [(None, "primary"), (None, "backup")])

    def test_post_rerun_with_ids_runs_once(self):
        runs = self.post_across_primary_crash("Request-Id", {"Request-Id": "forged"})
        self.assertEqual(len(runs), 1, runs)
        rid, instance = runs[0]
        self.assertEqual(instance, "primary")
        self.assertRegex(rid, ID_RE)
        self.assertIn(f"POST /pay id={rid} stored reply", self.lab.log_tail("backup", "once", 4000))

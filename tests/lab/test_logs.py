"""Logs (issue 12, item 6; docs/LOGS.md): one client followed through a failover by its connection
id. The client makes a request on a keep-alive connection, then the primary dies at
primary.reply_read in the middle of the second request (Table 2: it read the reply from its server
but never replicated it) and the backup takes the connection over and answers.

With log.format = "json" every line of both daemons' logs is one JSON object with ts, level, role
and msg, and the id the primary logged for the connection is the one the backup logs for its
takeover and reply. With log.format = "text" the lines keep their old shape and the same id is
conn=... on both nodes: SHA-256 of the connection key's text, cut to 12 hex digits.

Both run at log.level = "debug": at the default level a primary logs nothing per connection.
Read tests/lab/node_case.py and tests/lab/test_table2.py (FaultCase) first.
"""
import hashlib
import json
import os
import re

from tests.lab.node_case import NEEDS_ROOT
from tests.lab.test_table2 import FaultCase

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"trace", "debug", "info", "warning", "error", "critical"}
# The text line, as it always was: time, level, [role], message; then conn=ID if it has one.
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (\w+) +\[(primary|backup)\] (.*)$")
CONN = re.compile(r" conn=([0-9a-f]{12})$")
KEY = re.compile(r"(\d+\.\d+\.\d+\.\d+:\d+/isn=\d+)")


@NEEDS_ROOT
class LogsTest(FaultCase):

    def failover_on_one_connection(self):
        """The client's connection ('ip:port' as it sees it), after a request answered by the
        primary and a second one answered by the backup once the primary died inside it."""
        self.start_duplex()
        ready, go = self.ready_file("warm"), self.ready_file("go")
        p = self.client([{"op": "send", "reqs": [self.get("/f/1k.bin")]},
                         {"op": "read", "methods": ["GET"]},
                         {"op": "touch", "file": ready}, {"op": "wait", "file": go},
                         {"op": "send", "reqs": [self.get("/echo/slow?ms=300")]},
                         {"op": "read", "methods": ["GET"]}])
        self.wait_file(ready)
        self.arm("primary", "primary.reply_read")
        open(go, "w").close()
        res = self.client_result(p)
        self.died_at("primary", "primary.reply_read")
        self.survivor("backup")
        r0, r1 = res["results"]
        self.assert_raw_file(r0, "/f/1k.bin")
        self.assertEqual(json.loads(r1["text"]), {"slept_ms": 300, "node": "backup"})
        return res["local"]

    def log_lines(self, node):
        with open(os.path.join(self.lab.node_dir(node), "understudy.log"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertTrue(lines, f"{node} logged nothing")
        return lines


class JsonLogsTest(LogsTest):
    config_overrides = {"log": {"format": "json", "level": "debug"}}

    def parsed(self, node):
        out = []
        for n, line in enumerate(self.log_lines(node), 1):
            try:
                j = json.loads(line)
            except ValueError:
                self.fail(f"{node} log line {n} is not JSON: {line!r}")
            self.assertIsInstance(j, dict, line)
            for key in ("ts", "level", "role", "msg"):
                self.assertIsInstance(j.get(key), str, f"{key} in {node} line {n}: {line!r}")
            self.assertRegex(j["ts"], TS, line)
            self.assertIn(j["level"], LEVELS, line)
            self.assertEqual(j["role"], node, line)
            out.append(j)
        return out

    def test_every_line_is_json_and_the_backup_names_the_primarys_connection(self):
        client = self.failover_on_one_connection()
        primary, backup = self.parsed("primary"), self.parsed("backup")
        mine = [j for j in primary if j.get("client") == client]
        ids = {j["conn"] for j in mine}
        self.assertEqual(len(ids), 1, f"the primary's ids for {client}: {ids}")
        (cid,) = ids
        events = {j.get("event") for j in mine}
        self.assertTrue({"conn_open", "request", "reply"} <= events, events)
        self.assertTrue(any("fault: primary.reply_read reached" in j["msg"] for j in primary))
        # The backup: the takeover of that connection, the re-run request's reply, same client.
        theirs = [j for j in backup if j.get("conn") == cid]
        self.assertTrue(theirs, f"no backup line has conn {cid}")
        self.assertEqual({j["client"] for j in theirs}, {client})
        self.assertIn("conn_takeover", {j.get("event") for j in theirs})
        self.assertIn(1, {j.get("request") for j in theirs if j.get("event") == "reply"})
        takeover = [j for j in backup if j.get("event") == "takeover"]
        self.assertEqual(len(takeover), 1, takeover)
        self.assertEqual((takeover[0]["mode"], takeover[0]["peer"]), ("simplex", "primary"))
        changes = [j["mode"] for j in backup if j.get("event") == "mode_change"]
        self.assertEqual(changes[-2:], ["duplex", "simplex"], changes)


class TextLogsTest(LogsTest):
    config_overrides = {"log": {"level": "debug"}}  # log.format left out: text

    def conn_ids(self, node, client):
        """{conn id: connection key text} of the node's lines about `client`; every line has the
        text format's shape."""
        ids = {}
        for line in self.log_lines(node):
            m = TEXT_LINE.match(line)
            self.assertIsNotNone(m, f"{node}: {line!r}")
            c, k = CONN.search(line), KEY.search(line)
            if c and k and k.group(1).startswith(client + "/"):
                ids.setdefault(c.group(1), set()).add(k.group(1))
        return ids

    def test_the_same_conn_id_on_both_nodes(self):
        client = self.failover_on_one_connection()
        primary, backup = self.conn_ids("primary", client), self.conn_ids("backup", client)
        self.assertEqual(len(primary), 1, primary)
        self.assertEqual(primary, backup)
        ((cid, keys),) = primary.items()
        (key,) = keys
        # docs/LOGS.md: printf %s KEY | sha256sum | cut -c1-12
        self.assertEqual(cid, hashlib.sha256(key.encode()).hexdigest()[:12])
        with open(os.path.join(self.lab.node_dir("backup"), "understudy.log")) as f:
            self.assertRegex(f.read(), rf"(?m)\] message: {re.escape(key)}: taking over: .* conn={cid}$")

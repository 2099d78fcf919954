#!/usr/bin/env python3
"""A back-end that applies each POST once per request id (Python 3 standard library only).

Understudy's backup runs a request again when the primary died after its server ran it but
before the reply reached the backup (the paper's Table 2, "primary fails after it acknowledges a
complete request but before it sends a full copy of the reply"). With ``node.request_id_header``
set, both nodes send that request with the same id, which no client can forge or predict
(docs/MESSAGE_LAYER.md, "The client's identity"). This server shows how a back-end uses it:

  * a POST whose id it has seen is not run again: the stored reply is returned;
  * a POST with a new id (or with none) is run, and its reply stored under the id, in one
    SQLite transaction, so a re-run that races the original waits for it and then finds it.

Both nodes' back-ends must share the store: each node runs its own server, and only a store both
see can tell that the backup's re-run is the primary's request. Here it is one SQLite file that
both instances open (on one host, as in the lab; across real hosts use a database both reach).

"Running" a POST here is recording it in the ``executions`` table; the reply is a function of
the request only (no Date, no counter), so a re-run and a stored reply are the same bytes.

    exactly_once_backend.py --listen 127.0.0.1:9100 --db /var/lib/demo/once.db \
        [--id-header Request-Id] [--name primary]

GET /executions answers {"executions": N}: how many times any POST was run, by every instance.
"""

import argparse
import hashlib
import http.server
import json
import sqlite3
import sys

SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (id TEXT PRIMARY KEY, status INTEGER, body BLOB);
CREATE TABLE IF NOT EXISTS executions (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, path TEXT,
                                       body_sha256 TEXT, instance TEXT);
"""


def connect(path):
    # Autocommit mode: transactions are the explicit BEGIN IMMEDIATE below.
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 30000")
    return db


def apply_post(db, request_id, path, body, instance):
    """Runs the POST unless `request_id` was seen; returns (status, reply body, ran)."""
    digest = hashlib.sha256(body).hexdigest()
    reply = json.dumps({"path": path, "bytes": len(body), "sha256": digest}, sort_keys=True).encode()
    # BEGIN IMMEDIATE takes the write lock first: two instances cannot both miss the id.
    db.execute("BEGIN IMMEDIATE")
    try:
        if request_id:
            row = db.execute("SELECT status, body FROM replies WHERE id = ?", (request_id,)).fetchone()
            if row:
                db.execute("COMMIT")
                return row[0], bytes(row[1]), False
        db.execute("INSERT INTO executions (id, path, body_sha256, instance) VALUES (?, ?, ?, ?)",
                   (request_id, path, digest, instance))
        if request_id:
            db.execute("INSERT INTO replies (id, status, body) VALUES (?, ?, ?)", (request_id, 200, reply))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return 200, reply, True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as behind a proxy
    server_version = "exactly-once-demo"

    def reply(self, status, body):
        # No Server or Date header: a stored reply and a re-run give the same bytes.
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/executions":
            return self.reply(404, b'{"error": "not found"}')
        db = connect(self.server.db_path)
        try:
            (n,) = db.execute("SELECT COUNT(*) FROM executions").fetchone()
        finally:
            db.close()
        self.reply(200, json.dumps({"executions": n}).encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        request_id = self.headers.get(self.server.id_header) or None
        db = connect(self.server.db_path)
        try:
            status, reply, ran = apply_post(db, request_id, self.path, body, self.server.name)
        finally:
            db.close()
        self.log_message("POST %s id=%s %s", self.path, request_id or "-", "ran" if ran else "stored reply")
        self.reply(status, reply)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:9100", help="IP:port (default %(default)s)")
    ap.add_argument("--db", required=True, help="the SQLite file every instance shares")
    ap.add_argument("--id-header", default="Request-Id",
                    help="the header Understudy's node.request_id_header names (default %(default)s)")
    ap.add_argument("--name", default="", help="this instance's name, recorded with each execution")
    a = ap.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    db = connect(a.db)
    db.execute("PRAGMA journal_mode = WAL")  # readers do not wait for the writer
    db.executescript(SCHEMA)
    db.close()
    srv = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    srv.db_path, srv.id_header, srv.name = a.db, a.id_header, a.name
    print(f"exactly-once back-end on {a.listen}, store {a.db}, ids in {a.id_header}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

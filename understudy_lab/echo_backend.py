"""Tiny HTTP/1.1 back-end for the lab (standard library only).

Runs inside a node namespace behind nginx (`location /echo`):

  POST|PUT /echo...      -> {"length": N, "sha256": "...", "node": NAME}
  GET /echo/slow?ms=N    -> replies after N milliseconds (to crash a node mid-request)
  GET /echo...           -> {"node": NAME, "path": PATH}
"""

import argparse
import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "understudy-echo/1"
    node_name = "?"

    def log_message(self, fmt, *args):  # keep stderr quiet; nginx logs requests
        pass

    def _reply(self, code, obj):
        body = (json.dumps(obj, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self):
        h = hashlib.sha256()
        n = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        raise ConnectionError("short chunk")
                    h.update(chunk)
                    n += len(chunk)
                    remaining -= len(chunk)
                self.rfile.readline()  # CRLF after chunk
        else:
            remaining = int(self.headers.get("Content-Length", "0") or 0)
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    raise ConnectionError("short body")
                h.update(chunk)
                n += len(chunk)
                remaining -= len(chunk)
        return n, h.hexdigest()

    def do_POST(self):
        n, digest = self._read_body()
        self._reply(200, {"length": n, "sha256": digest, "node": self.node_name})

    do_PUT = do_POST

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path.rstrip("/").endswith("/slow"):
            ms = int(parse_qs(url.query).get("ms", ["0"])[0])
            time.sleep(ms / 1000.0)  # the feature itself, not synchronisation
            self._reply(200, {"slept_ms": ms, "node": self.node_name})
            return
        self._reply(200, {"node": self.node_name, "path": url.path})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--name", default="?")
    args = ap.parse_args(argv)
    Handler.node_name = args.name
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer((args.listen, args.port), Handler)
    print(f"echo backend {args.name} listening on {args.listen}:{args.port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

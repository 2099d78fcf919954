"""A background client for tests that span several events (a crash, a restart, a rejoin): it
sends GETs in a loop until told to stop and reports every reply's status, size and sha256, and the
local port of the connection it came on, so a test checks each byte-exact and sees any reconnect.

  python3 -m understudy_lab.request_stream http://198.18.0.100/f/1k.bin [PATH ...] --stop FILE
        [--new-connections] [--interval-ms MS] [--count N] [--gate FIFO] [--progress FILE]

Paths are requested in turn, cyclically, on ONE keep-alive connection (or a new connection per
request with --new-connections) until FILE exists or N replies arrived. --gate FIFO: after the
first reply, block until the test writes to the FIFO (an idle keep-alive connection across an
event). --progress FILE holds the number of replies so far (so a test waits for "k more replies"
instead of sleeping). Any error ends the loop; prints one JSON object, exit status 0 if ok.
"""
import argparse
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.parse


def write_progress(path, n):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(n))
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("more", nargs="*", help="further paths, requested in turn")
    ap.add_argument("--stop")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--new-connections", action="store_true")
    ap.add_argument("--interval-ms", type=float, default=0.0)
    ap.add_argument("--gate")
    ap.add_argument("--progress")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    paths = [u.path or "/"] + a.more
    conn = None
    results = []
    error = None
    try:
        while not (a.count and len(results) >= a.count) and not (a.stop and os.path.exists(a.stop)):
            if results and a.interval_ms:
                time.sleep(a.interval_ms / 1000)
            if len(results) == 1 and a.gate:
                with open(a.gate) as f:
                    f.read()
            if conn is None or a.new_connections:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=a.timeout)
                conn.connect()
            path = paths[len(results) % len(paths)]
            t0 = time.monotonic()
            conn.request("GET", path)
            port = conn.sock.getsockname()[1]  # before the reply: a closing reply drops the socket
            resp = conn.getresponse()
            body = resp.read()
            results.append({"path": path, "status": resp.status, "size": len(body),
                            "sha256": hashlib.sha256(body).hexdigest(), "port": port,
                            "ms": round((time.monotonic() - t0) * 1000, 2)})
            if a.progress:
                write_progress(a.progress, len(results))
    except (OSError, http.client.HTTPException) as e:
        error = f"{type(e).__name__}: {e} (after {len(results)} replies)"
    print(json.dumps({"ok": error is None, "error": error, "results": results}))
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())

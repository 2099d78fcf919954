"""A client that measures what a user would feel: one or more requests over ONE keep-alive
connection with Python's http.client, reporting per reply the status, size, sha256 and the
longest gap between two reads (the stall a failover causes). Prints one JSON object.

  python3 -m understudy_lab.timed_fetch http://198.18.0.100/f/64m.bin [PATH ...] [--rate BYTES_PER_S]
                 [--ready FILE] [--ready-after BYTES] [--interval-ms MS]

--ready FILE is created once BYTES of the first reply arrived (default: its headers), so a test
can crash a node mid-reply without sleeping. --rate paces reads so a large reply stays in flight
for a while; --interval-ms paces the requests (a steady stream rather than a burst).
"""
import argparse
import hashlib
import http.client
import json
import sys
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("more", nargs="*", help="further paths on the same connection")
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--ready")
    ap.add_argument("--ready-after", type=int, default=0)
    ap.add_argument("--interval-ms", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=a.timeout)
    results = []
    try:
        for i, path in enumerate([u.path or "/"] + a.more):
            if i and a.interval_ms:
                time.sleep(a.interval_ms / 1000)
            t0 = time.monotonic()
            conn.request("GET", path)
            resp = conn.getresponse()
            ttfb = time.monotonic() - t0
            ready_pending = bool(a.ready) and not results
            if ready_pending and a.ready_after <= 0:
                open(a.ready, "w").close()
                ready_pending = False
            h = hashlib.sha256()
            size = 0
            last = time.monotonic()
            max_gap = 0.0
            start = last
            while True:
                chunk = resp.read1(65536)
                now = time.monotonic()
                if not chunk:
                    break
                max_gap = max(max_gap, now - last)
                last = now
                h.update(chunk)
                size += len(chunk)
                if ready_pending and size >= a.ready_after:
                    open(a.ready, "w").close()
                    ready_pending = False
                if a.rate > 0:
                    ahead = size / a.rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
                        last = time.monotonic()
            resp.read()  # read1() leaves a drained reply open; this closes it for the next request
            results.append({"path": path, "status": resp.status, "size": size,
                            "sha256": h.hexdigest(), "ttfb_ms": round(ttfb * 1000, 2),
                            "max_gap_ms": round(max_gap * 1000, 2),
                            "total_ms": round((time.monotonic() - t0) * 1000, 2)})
    except (OSError, http.client.HTTPException) as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "results": results}))
        return 1
    print(json.dumps({"ok": True, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

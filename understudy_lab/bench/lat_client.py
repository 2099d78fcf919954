"""Latency client (runs in the lab's client namespace): N sequential GETs of one path.

  python3 -m understudy_lab.bench.lat_client HOST PORT PATH --size BYTES --sha256 HEX --n N [--conn new|keep] [--warmup K] [--sync]

--conn new : every request opens a new TCP connection (connect + request + whole reply, timed
             together, as in the paper), sends "Connection: close", closes after the reply.
--conn keep: one keep-alive connection opened before the timer; each request times request +
             whole reply.
Each reply is checked (status 200, Content-Length and body length == --size, sha256) after its
timer stopped. Prints one JSON object: ok, errors, lat_ms (per request), ttfb_ms.
"""
import argparse
import json
import sys
import time

from understudy_lab.bench import httpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("path")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--sha256", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--conn", choices=("new", "keep"), default="new")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--sync", action="store_true",
                    help="after the warm-up print WARM and wait for a line on stdin (the bench "
                         "resets the daemon's histograms then), keep-alive: on the same connection")
    a = ap.parse_args()

    clock = time.perf_counter
    new = a.conn == "new"
    req = httpc.request_bytes(a.host, a.path, close=new)
    lat, ttfb, errors = [], [], []
    sock = None
    for i in range(a.warmup + a.n):
        if a.sync and i == a.warmup:
            sys.stdout.write("WARM\n")
            sys.stdout.flush()
            sys.stdin.readline()
        try:
            if new:
                t0 = clock()
                sock = httpc.connect(a.host, a.port, a.timeout)
            else:
                if sock is None:
                    sock = httpc.connect(a.host, a.port, a.timeout)
                t0 = clock()
            sock.sendall(req)
            status, length, keep, t_first, parts = httpc.read_reply(sock, clock)
            t1 = clock()
            if new:
                sock.close()
                sock = None
            elif not keep:
                sock.close()
                sock = None
                raise httpc.HttpError("server closed a keep-alive connection")
            got = sum(len(p) for p in parts)
            if status != 200 or length != a.size or got != a.size:
                raise httpc.HttpError(f"status {status}, length {length}, got {got}, want 200/{a.size}")
            if httpc.digest(parts) != a.sha256:
                raise httpc.HttpError("body sha256 mismatch")
            if i >= a.warmup:
                lat.append(round((t1 - t0) * 1000, 4))
                ttfb.append(round((t_first - t0) * 1000, 4))
        except (OSError, httpc.HttpError, ValueError) as e:
            errors.append(f"request {i}: {type(e).__name__}: {e}")
            if sock is not None:
                sock.close()
                sock = None
            if len(errors) >= 10:
                break
    if sock is not None:
        sock.close()
    print(json.dumps({"ok": not errors and len(lat) == a.n, "errors": errors,
                      "lat_ms": lat, "ttfb_ms": ttfb}))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())

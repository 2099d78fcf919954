"""Steady-load client for the failover scenario (runs in the lab's client namespace).

One process, non-blocking sockets, one selector. Each "connection slot" repeats GET <path>
every --interval-ms (or as soon as the previous reply completed, if later):
  keep slots reuse one keep-alive connection; new slots open a connection per request.
Every read is time-stamped with time.monotonic() (the same clock as the bench process: network
namespaces do not change clocks), so the bench can line the reads up with the crash.

  python3 -m understudy_lab.bench.load_client HOST PORT --slot keep:/f/1k.bin:1024:SHA ... --duration S [--ready FILE]

A request fails if the connection errors or closes early, the reply is not 200, or its size or
sha256 is wrong, or it is outstanding longer than --req-timeout. Prints one JSON object.
"""
import argparse
import errno
import hashlib
import json
import os
import selectors
import socket
import sys
import time

from understudy_lab.bench import httpc

now = time.monotonic


class Slot:
    def __init__(self, i, kind, path, size, sha, host, port):
        self.i, self.kind, self.path, self.size, self.sha = i, kind, path, size, sha
        self.addr = (host, port)
        self.req = httpc.request_bytes(host, path, close=(kind == "new"))
        self.sock = None
        self.state = "idle"        # idle, connecting, sending, reading
        self.next_at = 0.0
        self.t_req = None          # when the current request started (connect or send)
        self.last = None           # last progress (request start or a read)
        self.reads = []            # monotonic time of every read that returned bytes
        self.done = 0
        self.failed = 0
        self.errors = []
        self.max_gap = 0.0         # longest wait for progress while a request was outstanding
        self.gap_at = None
        self.lat = []

    def reset_reply(self):
        self.head = bytearray()
        self.body_left = None
        self.status = None
        self.hasher = hashlib.sha256()
        self.out = memoryview(self.req)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--slot", action="append", required=True, help="keep|new:PATH:SIZE:SHA256")
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--req-timeout", type=float, default=10.0)
    ap.add_argument("--ready")
    a = ap.parse_args()

    sel = selectors.DefaultSelector()
    slots = []
    for i, spec in enumerate(a.slot):
        kind, path, size, sha = spec.split(":")
        slots.append(Slot(i, kind, path, int(size), sha, a.host, a.port))
    t_start = now()
    t_end = t_start + a.duration
    ready_written = not a.ready

    def fail(sl, why):
        sl.failed += 1
        if len(sl.errors) < 5:
            sl.errors.append(f"{round(now() - t_start, 4)}s: {why}")
        close(sl)
        sl.state = "idle"
        sl.next_at = now()

    def close(sl):
        if sl.sock is not None:
            try:
                sel.unregister(sl.sock)
            except (KeyError, ValueError):
                pass
            sl.sock.close()
            sl.sock = None

    def progress(sl, t):
        gap = t - sl.last
        if gap > sl.max_gap:
            sl.max_gap, sl.gap_at = gap, sl.last - t_start
        sl.last = t

    def start_request(sl, t):
        sl.reset_reply()
        sl.t_req = sl.last = t
        if sl.sock is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex(sl.addr)
            if rc not in (0, errno.EINPROGRESS):
                s.close()
                fail(sl, f"connect: {os.strerror(rc)}")
                return
            sl.sock = s
            sl.state = "connecting"
            sel.register(s, selectors.EVENT_WRITE, sl)
        else:
            sl.state = "sending"
            sel.modify(sl.sock, selectors.EVENT_WRITE, sl)

    def on_event(sl, t):
        s = sl.sock
        if sl.state == "connecting":
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fail(sl, f"connect: {os.strerror(err)}")
                return
            sl.state = "sending"
        if sl.state == "sending":
            try:
                n = s.send(sl.out)
            except BlockingIOError:
                return
            except OSError as e:
                fail(sl, f"send: {e}")
                return
            sl.out = sl.out[n:]
            if not len(sl.out):
                sl.state = "reading"
                sel.modify(s, selectors.EVENT_READ, sl)
            return
        # reading
        try:
            data = s.recv(262144)
        except BlockingIOError:
            return
        except OSError as e:
            fail(sl, f"recv: {e}")
            return
        if not data:
            fail(sl, f"connection closed mid-reply ({len(sl.head)} head bytes, {sl.body_left} body bytes left)")
            return
        sl.reads.append(t)
        progress(sl, t)
        if sl.body_left is None:
            sl.head += data
            i = sl.head.find(b"\r\n\r\n")
            if i < 0:
                return
            try:
                sl.status, length, keep = httpc.parse_head(bytes(sl.head[:i]))
            except (httpc.HttpError, ValueError) as e:
                fail(sl, str(e))
                return
            sl.keep, sl.length = keep, length
            data = bytes(sl.head[i + 4:])
            sl.body_left = length
        if len(data) > sl.body_left:
            fail(sl, "bytes after the reply body")
            return
        sl.hasher.update(data)
        sl.body_left -= len(data)
        if sl.body_left == 0:
            ok = sl.status == 200 and sl.length == sl.size and sl.hasher.hexdigest() == sl.sha
            if not ok:
                fail(sl, f"bad reply: status {sl.status}, length {sl.length}, want 200/{sl.size} and sha")
                return
            sl.done += 1
            sl.lat.append(round((t - sl.t_req) * 1000, 3))
            if sl.kind == "new" or not sl.keep:
                close(sl)
            else:
                sel.modify(s, selectors.EVENT_READ, sl)  # idle: notice a close by the server
            sl.state = "idle"
            sl.next_at = max(sl.t_req + a.interval_ms / 1000, t)

    while True:
        t = now()
        active = [sl for sl in slots if sl.state != "idle"]
        if t >= t_end and not active:
            break
        for sl in slots:
            if sl.state == "idle" and t < t_end and t >= sl.next_at:
                start_request(sl, t)
            elif sl.state != "idle" and t - sl.t_req > a.req_timeout:
                fail(sl, f"timed out after {a.req_timeout}s")
                sl.next_at = t
        if not ready_written and all(sl.done > 0 for sl in slots):
            open(a.ready, "w").close()
            ready_written = True
        if t >= t_end + a.req_timeout + 1:
            break
        waits = [sl.next_at - t for sl in slots if sl.state == "idle" and t < t_end]
        timeout = max(0.0, min(waits + [0.05]))
        for key, _ in sel.select(timeout):
            sl = key.data
            if sl.state == "idle":
                # a readable idle keep-alive connection: the server closed it (or sent junk)
                try:
                    data = sl.sock.recv(1)
                except OSError:
                    data = b""
                close(sl)
                if data:
                    fail(sl, "bytes outside a reply")
                continue
            on_event(sl, now())
    for sl in slots:
        close(sl)
    out = {"t_start": t_start, "slots": [{
        "i": sl.i, "kind": sl.kind, "path": sl.path, "done": sl.done, "failed": sl.failed,
        "errors": sl.errors, "max_gap_ms": round(sl.max_gap * 1000, 3),
        "max_gap_at_s": None if sl.gap_at is None else round(sl.gap_at, 4),
        "reads": [round(x, 6) for x in sl.reads], "lat_ms": sl.lat} for sl in slots]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

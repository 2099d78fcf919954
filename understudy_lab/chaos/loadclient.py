"""Verifying HTTP load client for the chaos harness (Python 3 standard library only).

Runs in the lab's client namespace against http://198.18.0.100/ and keeps many connections
busy until a stop file appears, then lets every request already sent finish and prints one JSON
object on stdout. Every reply is checked byte-exact; nothing is ever retried.

Workers (each its own thread and TCP connection, all HTTP parsing by http.client):
  get   keep-alive GETs of the lab's files (sizes 0 .. 1 MiB, sha256 known from the manifest);
        ~10% carry "Connection: close" (a fresh connection for the next request)
  post  keep-alive POST /echo with a seeded body (0 .. 1 MiB, ~25% chunked); the reply's JSON
        {"length","sha256"} must match what was sent
  pipe  pipelined: 2..8 requests (GETs and small POSTs) written with ONE send on one socket,
        the replies read one after another with http.client.HTTPResponse on a shared reader
  big   one 64 MiB GET (only with --big)

Counts: sent, completed, failed by kind (connect, reset, timeout, truncated, wrong), per-request
stall = the longest time an outstanding request waited without receiving a byte.

For the cycles mode (chaos/run --cycles): --rotate P makes post and pipe workers end their
connection too (a POST with "Connection: close", a pipelined batch followed by a close) with
probability P, and --conn-max-age S ends any connection at its first request boundary after S
seconds, so no connection lives long; --gap-log-ms T lists every request's longest gap
of at least T ms as [start, end, ok, worker type] (CLOCK_MONOTONIC), which the runner assigns to crashes and
rejoins. Both are off by default: a trial draws exactly the same requests as before.
"""
import argparse
import hashlib
import http.client
import io
import json
import os
import random
import socket
import struct
import sys
import threading
import time

KINDS = ("connect", "reset", "timeout", "truncated", "wrong")
GET_WEIGHTS = {"/f/0.bin": 8, "/f/1k.bin": 30, "/f/5k.bin": 20, "/f/10k.bin": 20,
               "/f/100k.bin": 14, "/f/1m.bin": 3}
POST_SIZES = [0, 1, 100, 1000, 1400, 3000, 16 << 10, 64 << 10, 300 << 10, 1 << 20]
POST_WEIGHTS = [5, 5, 15, 15, 10, 15, 15, 10, 6, 4]
CHUNK = 64 << 10


class Wrong(Exception):
    """The reply arrived but its status, headers or bytes are not what the server must send."""


class ConnectFailed(Exception):
    pass


TCP_INFO_FIELDS = ("state", "ca_state", "retransmits", "probes", "backoff", "options", "wscale", "flags",
                   "rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans", "fackets",
                   "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv", "pmtu",
                   "rcv_ssthresh", "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss", "reordering",
                   "rcv_rtt", "rcv_space", "total_retrans")
TCP_INFO_KEEP = ("state", "ca_state", "retransmits", "backoff", "rto", "unacked", "lost", "retrans",
                 "last_data_sent", "last_data_recv", "last_ack_recv", "rtt", "total_retrans")


def tcpinfo(sock):
    """Kernel TCP state of a failed request's socket (struct tcp_info, times in ms / us as the
    kernel gives them): tells TCP back-off (retransmits, backoff, unacked > 0) from a peer that
    acknowledged everything and stays silent (unacked == 0)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        vals = struct.unpack("8B24I", raw[:104])
        d = dict(zip(TCP_INFO_FIELDS, vals))
        return {k: d[k] for k in TCP_INFO_KEEP}
    except Exception:
        return None


def classify(e):
    if isinstance(e, ConnectFailed):
        return "connect"
    if isinstance(e, Wrong):
        return "wrong"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, http.client.IncompleteRead):
        return "truncated"
    if isinstance(e, (ConnectionError, http.client.RemoteDisconnected)):
        return "reset"          # RST, EPIPE, or closed before the status line
    if isinstance(e, (http.client.HTTPException, ValueError, UnicodeError)):
        return "wrong"          # unparsable status line / headers / chunking
    if isinstance(e, OSError):
        return "reset"          # EHOSTUNREACH etc.: the connection is gone
    return "wrong"


class NoCloseReader(io.RawIOBase):
    """A view of one shared buffered reader whose close() does nothing, so several
    http.client.HTTPResponse objects can parse consecutive (pipelined) replies from one socket
    without losing bytes that the first one's buffer read ahead."""

    def __init__(self, buffered):
        super().__init__()
        self.b = buffered

    def readable(self):
        return True

    def readinto(self, buf):
        data = self.b.read1(len(buf))
        buf[:len(data)] = data
        return len(data)

    def read(self, n=-1):
        return self.b.read(n)

    def read1(self, n=-1):
        return self.b.read1(n)

    def readline(self, limit=-1):
        return self.b.readline(limit)

    def peek(self, n=0):
        return self.b.peek(n)

    def close(self):
        pass

    @property
    def closed(self):
        return False


class SharedSock:
    """What http.client.HTTPResponse expects of a socket: makefile() -> the shared reader."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=CHUNK)

    def makefile(self, mode="rb", *a, **kw):
        return NoCloseReader(self.reader)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.completed = 0
        self.failed = dict.fromkeys(KINDS, 0)
        self.failures = []          # details of the first 50
        self.reqs = []              # (t_sent, t_end, ok, stall_s)
        self.late_s = float("inf")  # a completed request that stalled this long counts as late
        self.late = []              # details of the first 20 late ones
        self.bytes = 0
        self.by_type = {}
        self.connects = 0
        self.gap_log_s = None       # log gaps at least this long (None: off)
        self.gaps = []              # [start, end, ok, worker type] of each request's longest gap

    def add(self, wtype, t0, t1, ok, stall, nbytes, detail=None, gap_at=None):
        with self.lock:
            if self.gap_log_s is not None and gap_at is not None and stall >= self.gap_log_s \
                    and len(self.gaps) < 50000:
                self.gaps.append([round(gap_at[0], 4), round(gap_at[1], 4), ok, wtype])
            self.sent += 1
            bt = self.by_type.setdefault(wtype, [0, 0])
            bt[0] += 1
            self.bytes += nbytes
            if ok:
                self.completed += 1
                bt[1] += 1
                if stall >= self.late_s and detail is not None and len(self.late) < 20:
                    self.late.append(detail)
            else:
                self.failed[detail["kind"]] += 1
                if len(self.failures) < 50:
                    self.failures.append(detail)
            self.reqs.append((t0, t1, ok, stall))


class Progress:
    """Tracks the longest gap between progress events of one request."""

    def __init__(self, t0):
        self.last = t0
        self.gap = 0.0
        self.gap_at = (t0, t0)   # (start, end) of the longest gap

    def tick(self):
        now = time.monotonic()
        if now - self.last > self.gap:
            self.gap = now - self.last
            self.gap_at = (self.last, now)
        self.last = now
        return now


def read_body(resp, prog):
    h = hashlib.sha256()
    n = 0
    while True:
        b = resp.read(CHUNK)
        if not b:
            break
        prog.tick()
        h.update(b)
        n += len(b)
    check_complete(resp, n)
    return n, h


def check_complete(resp, n):
    """http.client's read(amt) returns b"" at EOF even if Content-Length is not satisfied."""
    if resp.length:
        raise http.client.IncompleteRead(b"", resp.length)


class Worker(threading.Thread):
    def __init__(self, client, wtype, idx, rng):
        super().__init__(daemon=True, name=f"{wtype}{idx}")
        self.c = client
        self.wtype = wtype
        self.rng = rng
        self.done_one = False
        self.local = None
        self.conn_t = 0.0

    # ---- helpers
    def connect(self):
        try:
            s = socket.create_connection((self.c.host, self.c.port), timeout=self.c.timeout)
        except OSError as e:
            raise ConnectFailed(f"{type(e).__name__}: {e}") from e
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local = "%s:%d" % s.getsockname()
        self.conn_t = time.monotonic()
        with self.c.stats.lock:
            self.c.stats.connects += 1
        return s

    def too_old(self):
        """--conn-max-age: end the connection at this request boundary (cycles mode)."""
        return self.c.max_age > 0 and time.monotonic() - self.conn_t > self.c.max_age

    def pick_get(self):
        paths = list(GET_WEIGHTS)
        return self.rng.choices(paths, weights=[GET_WEIGHTS[p] for p in paths])[0]

    def make_post(self):
        size = self.rng.choices(POST_SIZES, weights=POST_WEIGHTS)[0]
        body = self.rng.randbytes(size)
        return body, hashlib.sha256(body).hexdigest()

    def record_ok(self, t0, prog, nbytes):
        self.c.stats.add(self.wtype, t0, time.monotonic(), True, prog.gap, nbytes, {
            "worker": self.name, "local": self.local, "stall_ms": round(prog.gap * 1000, 1),
            "t_sent": round(t0, 4)}, prog.gap_at)
        self.ready()

    def record_fail(self, t0, prog, e, what, nbytes=0, tcp=None):
        now = time.monotonic()
        gap = max(prog.gap, now - prog.last) if prog else 0.0
        gap_at = None
        if prog:
            gap_at = prog.gap_at if prog.gap >= now - prog.last else (prog.last, now)
        kind = classify(e)
        self.c.stats.add(self.wtype, t0, now, False, gap, nbytes, {
            "kind": kind, "worker": self.name, "request": what, "local": self.local,
            "error": f"{type(e).__name__}: {e}"[:300], "bytes": nbytes,
            "t_sent": round(t0, 4), "t_fail": round(now, 4), "tcp": tcp}, gap_at)

    def ready(self):
        if not self.done_one:
            self.done_one = True
            self.c.worker_ready()

    def check_file_reply(self, resp, path, prog):
        size, sha = self.c.manifest[path]
        if resp.status != 200:
            raise Wrong(f"status {resp.status} for {path}")
        cl = resp.getheader("Content-Length")
        if cl is not None and int(cl) != size:
            raise Wrong(f"Content-Length {cl} != {size} for {path}")
        n, h = read_body(resp, prog)
        if n != size:
            raise Wrong(f"{n} body bytes != {size} for {path}")
        if h.hexdigest() != sha:
            raise Wrong(f"sha256 mismatch for {path}")
        return n

    def check_echo_reply(self, resp, size, sha, prog):
        if resp.status != 200:
            raise Wrong(f"status {resp.status} for POST /echo ({size} B)")
        n, _ = read_body_keep(resp, prog)
        try:
            j = json.loads(_)
        except ValueError as e:
            raise Wrong(f"echo reply is not JSON: {_[:200]!r}") from e
        if j.get("length") != size or j.get("sha256") != sha:
            raise Wrong(f"echo mismatch: sent {size} B {sha[:12]}, server got {j}")
        return n

    # ---- worker loops
    def run(self):
        try:
            getattr(self, "loop_" + self.wtype)()
        except Exception as e:  # a bug in the client itself: make it loud
            self.c.errors.append(f"{self.name}: {type(e).__name__}: {e}")
            self.ready()

    def loop_get(self):
        conn = None
        while not self.c.stopping.is_set():
            if conn is not None and self.too_old():
                conn.close()
                conn = None
            path = self.pick_get()
            close = self.rng.random() < 0.10
            t0 = time.monotonic()
            prog = Progress(t0)
            n = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.c.host, self.c.port, timeout=self.c.timeout)
                    conn.sock = self.connect()
                    t0 = prog.last = time.monotonic()
                conn.request("GET", path, headers={"Connection": "close"} if close else {})
                resp = conn.getresponse()
                prog.tick()
                n = self.check_file_reply(resp, path, prog)
                if resp.will_close:
                    conn.close()
                    conn = None
                self.record_ok(t0, prog, n)
            except Exception as e:
                self.record_fail(t0, prog, e, f"GET {path}", n, tcpinfo(conn.sock) if conn is not None and conn.sock else None)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def loop_big(self):
        path = "/f/64m.bin"
        t0 = time.monotonic()
        prog = Progress(t0)
        conn = None
        try:
            conn = http.client.HTTPConnection(self.c.host, self.c.port, timeout=self.c.timeout)
            conn.sock = self.connect()
            conn.request("GET", path)
            self.ready()   # the steady load does not wait for 64 MiB
            resp = conn.getresponse()
            prog.tick()
            n = self.check_file_reply(resp, path, prog)
            self.record_ok(t0, prog, n)
        except Exception as e:
            self.record_fail(t0, prog, e, f"GET {path}")
        finally:
            if conn is not None:
                conn.close()
            self.ready()

    def loop_post(self):
        conn = None
        while not self.c.stopping.is_set():
            if conn is not None and self.too_old():
                conn.close()
                conn = None
            body, sha = self.make_post()
            chunked = self.rng.random() < 0.25 and len(body) > 0
            close = self.c.rotate > 0 and self.rng.random() < self.c.rotate
            what = f"POST /echo {len(body)} B{' chunked' if chunked else ''}{' close' if close else ''}"
            t0 = time.monotonic()
            prog = Progress(t0)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.c.host, self.c.port, timeout=self.c.timeout)
                    conn.sock = self.connect()
                    t0 = prog.last = time.monotonic()
                hdrs = {"Content-Type": "application/octet-stream"}
                if close:
                    hdrs["Connection"] = "close"
                if chunked:
                    pieces = [body[i:i + 7000] for i in range(0, len(body), 7000)]
                    conn.request("POST", "/echo", body=iter(pieces), headers=hdrs, encode_chunked=True)
                else:
                    conn.request("POST", "/echo", body=body, headers=hdrs)
                prog.tick()  # the body is written: from here on we wait for the reply
                resp = conn.getresponse()
                prog.tick()
                n = self.check_echo_reply(resp, len(body), sha, prog)
                if resp.will_close:
                    conn.close()
                    conn = None
                self.record_ok(t0, prog, n)
            except Exception as e:
                self.record_fail(t0, prog, e, what, 0, tcpinfo(conn.sock) if conn is not None and conn.sock else None)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def loop_pipe(self):
        sock = shared = None
        while not self.c.stopping.is_set():
            depth = self.rng.randint(2, 8)
            reqs = []
            wire = bytearray()
            for _ in range(depth):
                if self.rng.random() < 0.2:
                    body, sha = self.rng.randbytes(self.rng.choice([0, 10, 500, 2000])), None
                    sha = hashlib.sha256(body).hexdigest()
                    reqs.append(("POST", "/echo", len(body), sha))
                    wire += (f"POST /echo HTTP/1.1\r\nHost: {self.c.host}\r\n"
                             f"Content-Type: application/octet-stream\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n").encode() + body
                else:
                    path = self.rng.choice(["/f/0.bin", "/f/1k.bin", "/f/5k.bin", "/f/10k.bin", "/f/100k.bin"])
                    reqs.append(("GET", path, None, None))
                    wire += f"GET {path} HTTP/1.1\r\nHost: {self.c.host}\r\n\r\n".encode()
            t0 = time.monotonic()
            try:
                if sock is None:
                    sock = self.connect()
                    shared = SharedSock(sock)
                    t0 = time.monotonic()
                sock.sendall(bytes(wire))
            except Exception as e:
                for m, p, size, _ in reqs:
                    self.record_fail(t0, Progress(t0), e, f"{m} {p} (pipelined, send)")
                if sock is not None:
                    sock.close()
                sock = shared = None
                continue
            prev_end = time.monotonic()
            for i, (m, p, size, sha) in enumerate(reqs):
                prog = Progress(prev_end)
                n = 0
                try:
                    resp = http.client.HTTPResponse(shared, method=m)
                    resp.begin()
                    prog.tick()
                    if m == "GET":
                        n = self.check_file_reply(resp, p, prog)
                    else:
                        n = self.check_echo_reply(resp, size, sha, prog)
                    if resp.will_close:
                        raise Wrong("server closed a pipelined keep-alive connection")
                    prev_end = time.monotonic()
                    self.record_ok(t0, prog, n)
                except Exception as e:
                    self.record_fail(t0, prog, e, f"{m} {p} (pipelined {i + 1}/{depth})", n, tcpinfo(sock))
                    for m2, p2, _, _ in reqs[i + 1:]:
                        self.record_fail(t0, Progress(time.monotonic()), e,
                                         f"{m2} {p2} (pipelined, after an earlier failure)")
                    sock.close()
                    sock = shared = None
                    break
            else:
                if (self.c.rotate > 0 and self.rng.random() < self.c.rotate) or self.too_old():
                    sock.close()   # every reply read: end the connection (cycles mode)
                    sock = shared = None
        if sock is not None:
            sock.close()


def read_body_keep(resp, prog):
    out = bytearray()
    while True:
        b = resp.read(CHUNK)
        if not b:
            break
        prog.tick()
        out += b
    check_complete(resp, len(out))
    return len(out), bytes(out)


class Client:
    def __init__(self, args):
        self.host = args.host
        self.port = args.port
        self.timeout = args.timeout
        with open(args.manifest) as f:
            self.manifest = {k: tuple(v) for k, v in json.load(f).items()}
        self.stats = Stats()
        self.stats.late_s = args.late
        self.rotate = args.rotate
        self.max_age = args.conn_max_age
        if args.gap_log_ms > 0:
            self.stats.gap_log_s = args.gap_log_ms / 1000
        self.stopping = threading.Event()
        self.errors = []
        self.ready_file = args.ready
        self.nready = 0
        self.lock = threading.Lock()
        rng = random.Random(args.seed)
        self.workers = []
        for wtype, n in (("get", args.get), ("post", args.post), ("pipe", args.pipe), ("big", args.big)):
            for i in range(n):
                self.workers.append(Worker(self, wtype, i, random.Random(rng.getrandbits(64))))

    def worker_ready(self):
        with self.lock:
            self.nready += 1
            if self.nready == len(self.workers) and self.ready_file:
                open(self.ready_file, "w").close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="198.18.0.100")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--manifest", required=True, help="JSON {path: [size, sha256]} (lab.manifest)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--get", type=int, default=5)
    ap.add_argument("--post", type=int, default=3)
    ap.add_argument("--pipe", type=int, default=2)
    ap.add_argument("--big", type=int, default=0, help="number of 64 MiB GETs (one each)")
    ap.add_argument("--timeout", type=float, default=15.0,
                    help="socket timeout (s): a request that gets no byte for this long fails")
    ap.add_argument("--late", type=float, default=8.0,
                    help="a completed request that waited this long (s) without a byte is late")
    ap.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    ap.add_argument("--stop-file", help="stop issuing requests once this file exists")
    ap.add_argument("--ready", help="touch this file once every worker completed a request")
    ap.add_argument("--crash-file", help="file holding the CLOCK_MONOTONIC time of the crash")
    ap.add_argument("--drain", type=float, default=60.0, help="max wait for requests in flight")
    ap.add_argument("--rotate", type=float, default=0.0,
                    help="post and pipe workers end their connection with this probability per "
                         "request / batch (get workers always do with 0.10)")
    ap.add_argument("--conn-max-age", type=float, default=0.0,
                    help="end a connection at its next request boundary once it is this many s "
                         "old (0: never)")
    ap.add_argument("--gap-log-ms", type=float, default=0.0,
                    help="list each request's longest gap if at least this many ms (0: off)")
    args = ap.parse_args()

    c = Client(args)
    t_start = time.monotonic()
    for w in c.workers:
        w.start()
    while True:
        if args.stop_file and os.path.exists(args.stop_file):
            break
        if args.duration and time.monotonic() - t_start >= args.duration:
            break
        if not any(w.is_alive() for w in c.workers):
            break
        time.sleep(0.005)  # polling interval for the stop file
    c.stopping.set()
    t_stop = time.monotonic()
    for w in c.workers:
        w.join(timeout=max(0.0, args.drain - (time.monotonic() - t_stop)))
    hung = [w.name for w in c.workers if w.is_alive()]

    st = c.stats
    with st.lock:
        reqs = list(st.reqs)
        out = {
            "ok": not c.errors and not hung,
            "sent": st.sent, "completed": st.completed,
            "failed": sum(st.failed.values()), "failed_by_kind": dict(st.failed),
            "by_type": st.by_type, "connects": st.connects, "bytes": st.bytes,
            "failures": st.failures, "client_errors": c.errors, "hung_workers": hung,
            "t_start": t_start, "t_stop": t_stop, "t_end": time.monotonic(),
        }
    stalls = sorted((r[3] for r in reqs), reverse=True)
    out["late"] = sum(1 for r in reqs if r[2] and r[3] >= args.late)
    out["late_requests"] = list(st.late)
    out["stall_max_ms"] = round(stalls[0] * 1000, 1) if stalls else 0.0
    out["stall_top_ms"] = [round(s * 1000, 1) for s in stalls[:5]]
    if st.gap_log_s is not None:
        out["gaps"] = list(st.gaps)
    crash_t = None
    if args.crash_file and os.path.exists(args.crash_file):
        try:
            with open(args.crash_file) as f:
                crash_t = float(f.read().strip())
        except ValueError:
            crash_t = None
    if crash_t is not None:
        over = [r for r in reqs if r[0] <= crash_t <= r[1]]
        out["in_flight_at_crash"] = len(over)
        out["in_flight_failed"] = sum(1 for r in over if not r[2])
        after = [r for r in reqs if r[0] > crash_t]
        out["sent_after_crash"] = len(after)
        out["crash_t"] = crash_t
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

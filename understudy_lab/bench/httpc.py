"""A minimal HTTP/1.1 GET client on raw sockets (standard library only).

Shared by the benchmark's client programs, which run inside the lab's client namespace.
It reads exactly one reply framed by Content-Length (nginx's static files always send it),
so nothing but the socket and the kernel sits between the timer and the bytes.
"""
import hashlib
import socket

REQ_TEMPLATE = "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: understudy-bench\r\n{extra}\r\n"


def request_bytes(host, path, close=False):
    return REQ_TEMPLATE.format(path=path, host=host,
                               extra="Connection: close\r\n" if close else "").encode()


class HttpError(Exception):
    pass


def connect(host, port, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def parse_head(head):
    """head: bytes up to (not including) the blank line -> (status, content_length, keep_alive)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    length = None
    keep = parts[0] == b"HTTP/1.1"
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"connection":
            keep = v.strip().lower() != b"close"
        elif k == b"transfer-encoding":
            raise HttpError("chunked replies are not supported by the bench client")
    if length is None:
        raise HttpError("reply without Content-Length")
    return status, length, keep


def read_reply(s, clock=None):
    """Read one reply from socket ``s``.

    Returns (status, body_len, keep_alive, t_first_byte, body_parts): t_first_byte = clock()
    when the first reply byte arrived (None without a clock); body_parts is a list of buffers
    to hash after the caller stopped its timer.
    """
    buf = bytearray()
    t_first = None
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise HttpError(f"connection closed after {len(buf)} header bytes")
        if t_first is None and clock is not None:
            t_first = clock()
        buf += chunk
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            break
        if len(buf) > 65536:
            raise HttpError("reply header too long")
    status, length, keep = parse_head(bytes(buf[:i]))
    first = bytes(buf[i + 4:])
    got0 = len(first)
    if got0 > length:
        raise HttpError(f"{got0 - length} bytes after the reply body")
    parts = [first]
    if got0 < length:
        rest = bytearray(length - got0)
        view = memoryview(rest)
        got = 0
        while got < len(rest):
            n = s.recv_into(view[got:], len(rest) - got)
            if n == 0:
                raise HttpError(f"connection closed after {got0 + got} of {length} body bytes")
            got += n
        parts.append(rest)
    return status, length, keep, t_first, parts


def digest(parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()

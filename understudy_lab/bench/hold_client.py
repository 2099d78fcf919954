"""Scale client (runs in the lab's client namespace): open and hold many connections.

  python3 -m understudy_lab.bench.hold_client HOST PORT --n N --path P --size BYTES --sha256 HEX [--batch 256] [--rate PER_S]

Driven by the bench over stdin/stdout, one JSON line per phase:
  1. opens up to N connections (at most --batch connects pending), prints {"phase": "idle", ...}
  2. on "busy" (stdin): sends GET P on every held connection and reads nothing,
     prints {"phase": "busy", ...}
  3. on "read": reads every reply, checks status 200, size and sha256, prints {"phase": "done"}
  4. on "close" or EOF: closes everything and exits.
"""
import argparse
import errno
import hashlib
import json
import os
import resource
import selectors
import socket
import sys
import time

from understudy_lab.bench import httpc


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--sha256", required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rate", type=float, default=0, help="connects per second (0: as fast as they complete)")
    ap.add_argument("--steps", default="", help="comma-separated counts: at each, print a 'step' line and "
                                                "wait for 'more' (go on) or 'stop' (hold what is open) on stdin")
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--read-timeout", type=float, default=120.0)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, a.n + 100), max(hard, a.n + 100)))

    sel = selectors.DefaultSelector()
    held, pending = [], {}
    errors, failed = [], 0
    t0 = time.monotonic()
    started = 0
    steps = sorted(int(x) for x in a.steps.split(",") if x and int(x) < a.n)
    limit = a.n
    t_rate = t0
    while started < limit or pending:
        if steps and started >= steps[0] and not pending:
            say({"phase": "step", "held": len(held), "failed": failed, "errors": errors,
                 "open_s": round(time.monotonic() - t0, 3)})
            steps.pop(0)
            if sys.stdin.readline().strip() == "stop":
                limit = started
                break
            if a.rate:  # no catch-up burst after the pause
                t_rate = time.monotonic() - started / a.rate
        while started < limit and len(pending) < a.batch and (not steps or started < steps[0]) and \
                (not a.rate or started < a.rate * (time.monotonic() - t_rate) + 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((a.host, a.port))
            started += 1
            if rc not in (0, errno.EINPROGRESS):
                failed += 1
                if len(errors) < 5:
                    errors.append(f"connect: {os.strerror(rc)}")
                s.close()
                continue
            pending[s] = time.monotonic()
            sel.register(s, selectors.EVENT_WRITE)
        for key, _ in sel.select(0.01 if a.rate else 0.2):
            s = key.fileobj
            sel.unregister(s)
            del pending[s]
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                failed += 1
                if len(errors) < 5:
                    errors.append(f"connect: {os.strerror(err)}")
                s.close()
            else:
                held.append(s)
        t = time.monotonic()
        for s, ts in list(pending.items()):
            if t - ts > a.connect_timeout:
                sel.unregister(s)
                del pending[s]
                s.close()
                failed += 1
                if len(errors) < 5:
                    errors.append(f"connect timed out after {a.connect_timeout}s")
    say({"phase": "idle", "held": len(held), "failed": failed, "errors": errors,
         "open_s": round(time.monotonic() - t0, 3)})

    req = httpc.request_bytes(a.host, a.path)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "busy":
            sent, send_err = 0, 0
            for s in held:
                try:
                    if s.send(req) == len(req):
                        sent += 1
                    else:
                        send_err += 1
                except OSError:
                    send_err += 1
            say({"phase": "busy", "sent": sent, "send_errors": send_err})
        elif cmd == "read":
            state = {}
            for s in held:
                state[s] = [bytearray(), None, hashlib.sha256(), None]  # head, left, hash, status
                sel.register(s, selectors.EVENT_READ)
            ok = bad = 0
            bad_errors = []
            deadline = time.monotonic() + a.read_timeout
            t1 = time.monotonic()
            while state and time.monotonic() < deadline:
                for key, _ in sel.select(0.5):
                    s = key.fileobj
                    st = state[s]
                    try:
                        data = s.recv(262144)
                    except OSError as e:
                        data, why = b"", str(e)
                    else:
                        why = "closed mid-reply"
                    if not data:
                        bad += 1
                        if len(bad_errors) < 5:
                            bad_errors.append(why)
                        sel.unregister(s)
                        del state[s]
                        continue
                    if st[1] is None:
                        st[0] += data
                        i = st[0].find(b"\r\n\r\n")
                        if i < 0:
                            continue
                        st[3], length, _ = httpc.parse_head(bytes(st[0][:i]))
                        st[1] = length if length == a.size else -1
                        data = bytes(st[0][i + 4:])
                    if st[1] < 0 or len(data) > st[1]:
                        st[1] = -1
                    else:
                        st[2].update(data)
                        st[1] -= len(data)
                    if st[1] <= 0:
                        if st[1] == 0 and st[3] == 200 and st[2].hexdigest() == a.sha256:
                            ok += 1
                        else:
                            bad += 1
                            if len(bad_errors) < 5:
                                bad_errors.append(f"bad reply: status {st[3]}")
                        sel.unregister(s)
                        del state[s]
            bad += len(state)
            if state:
                bad_errors.append(f"{len(state)} replies incomplete after {a.read_timeout}s")
            for s in state:
                sel.unregister(s)
            say({"phase": "done", "ok": ok, "bad": bad, "errors": bad_errors,
                 "read_s": round(time.monotonic() - t1, 3)})
        elif cmd == "close":
            break
    for s in held:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

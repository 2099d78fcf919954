"""The processes of a lab: nginx, the echo back-end and the daemons in the node namespaces
(start, wait for, status, stop, crash), and commands and curl fetches run in a namespace."""

import dataclasses
import hashlib
import json
import os
import secrets
import signal
import subprocess

from understudy_lab.common import (ADVERTISED_IP, ECHO_PORT, LabError, kill_pids, need_binary,
                                   pid_alive, proc_state, python_module, wait_for)
from understudy_lab.topology import ns_pids


@dataclasses.dataclass
class FetchResult:
    rc: int                 # curl exit code (0 = transfer completed)
    status: int             # HTTP status (0 if none)
    size: int               # bytes received (body)
    sha256: str             # sha256 of the body
    time_starttransfer: float
    time_total: float
    body: bytes = None      # only if keep_body=True
    stderr: str = ""

    @property
    def ok(self):
        return self.rc == 0 and 200 <= self.status < 300


class Processes:
    """Everything a lab started, by (node, kind); kind is nginx, echo, daemon or a caller's own."""

    def __init__(self, network, layout, binary):
        self.net = network
        self.layout = layout
        self.binary = binary
        self.procs = {}               # (node, kind) -> Popen
        self.logs = {}

    def spawn(self, node, kind, args, log_name, env=None):
        """Start ``args`` in the node's namespace, output to workdir/<node>/<log_name>."""
        os.makedirs(self.layout.node_dir(node), exist_ok=True)
        log = os.path.join(self.layout.node_dir(node), log_name)
        fh = open(log, "ab")
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.Popen(["ip", "netns", "exec", self.net.ns(node)] + list(args),
                             stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=e, start_new_session=True, cwd=self.layout.node_dir(node))
        fh.close()
        self.procs[(node, kind)] = p
        self.logs[(node, kind)] = log
        return p

    def start_echo(self, node, name):
        return self.spawn(node, "echo", python_module("understudy_lab.echo_backend", "--port", str(ECHO_PORT),
                                                      "--name", name), "echo.log")

    def start_nginx(self, node, conf):
        d = self.layout.nginx_dir(node)
        return self.spawn(node, "nginx", ["nginx", "-p", d + "/", "-c", conf, "-e", os.path.join(d, "logs", "error.log")],
                          "nginx.out")

    def wait_http(self, node, host, port, path="/", timeout=15, what=None, want_2xx=False):
        """Wait until an HTTP GET from inside ``node`` to host:port/path gets any HTTP status
        (with ``want_2xx``, a 2xx one: a proxy answers 502 before its back-end listens)."""
        url = f"http://{host}:{port}{path}"

        def probe():
            for key, p in self.procs.items():
                if key[0] == node and key[1] in ("nginx", "echo") and p.poll() is not None:
                    raise LabError(f"{key[1]} on {node} exited with {p.returncode}: {self.log_tail(node, key[1])}")
            cp = self.net.nsexec(node, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                        "--max-time", "2", url], check=False)
            code = cp.stdout.strip()
            if want_2xx:
                return cp.returncode == 0 and code.startswith(b"2")
            return cp.returncode == 0 and code not in (b"", b"000")
        return wait_for(probe, timeout, what or f"{url} in {self.net.ns(node)}")

    def log_tail(self, node, kind, n=2000):
        log = self.logs.get((node, kind)) or os.path.join(self.layout.node_dir(node), f"{kind}.log")
        try:
            with open(log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    # ---- daemon
    def start_daemon(self, node, config, env=None, write_default=None):
        """Start ``<binary> run --config`` in the node's namespace (log: workdir/<node>/understudy.log).

        If ``config`` does not exist, ``write_default()`` writes one and returns its path."""
        need_binary(self.binary)
        p = self.procs.get((node, "daemon"))
        if p is not None and p.poll() is None:
            raise LabError(f"daemon on {node} already running (pid {p.pid})")
        if not os.path.exists(config) and write_default is not None:
            config = write_default()
        return self.spawn(node, "daemon", [self.binary, "run", "--config", config], "understudy.log", env=env)

    def node_status(self, node, timeout=5):
        """``<binary> status --config <path> --json`` in the node's namespace -> dict or None."""
        need_binary(self.binary)
        try:
            cp = self.net.nsexec(node, [self.binary, "status", "--config", self.layout.config_path(node), "--json"],
                                 check=False, timeout=timeout)
        except LabError:
            return None
        if cp.returncode != 0:
            return None
        try:
            v = json.loads(cp.stdout.decode())
        except ValueError:
            return None
        return v if isinstance(v, dict) else None

    def wait_status(self, node, timeout=10, **expected):
        """Wait until node_status(node) has every field in ``expected``; return the status."""
        last = {}

        def probe():
            p = self.procs.get((node, "daemon"))
            if p is not None and p.poll() is not None:
                raise LabError(f"daemon on {node} exited with {p.returncode}")
            st = self.node_status(node)
            last["st"] = st
            return st if st and all(st.get(k) == v for k, v in expected.items()) else None
        try:
            return wait_for(probe, timeout, f"{node} status {expected}",
                            details=lambda: f"last status: {last.get('st')}; log tail:\n{self.log_tail(node, 'daemon')}")
        except LabError as e:
            raise LabError(f"{e}; log tail:\n{self.log_tail(node, 'daemon')}") from None

    def daemon_pids(self, node):
        """Daemon processes in the node namespace (tracked or started by someone else)."""
        pids = set()
        p = self.procs.get((node, "daemon"))
        if p is not None and p.poll() is None:
            pids.add(p.pid)
        real = os.path.realpath(self.binary)
        for pid in ns_pids(self.net.ns(node)):
            try:
                # A rebuilt binary leaves running daemons' exe as "<path> (deleted)".
                exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
                if os.path.realpath(exe) == real:
                    pids.add(pid)
            except OSError:
                pass
        return sorted(pids)

    def _wait_pids_gone(self, node, pids, timeout, what):
        p = self.procs.get((node, "daemon"))

        def gone():
            if p is not None:
                p.poll()
            return not any(pid_alive(x) and proc_state(x) != "Z" for x in pids)
        wait_for(gone, timeout, what)
        if p is not None and p.pid in pids:
            p.wait(timeout=timeout)
            return p.returncode
        return None

    def stop_node(self, node, timeout=10):
        """SIGTERM the daemon and wait for it (SIGKILL + LabError if it does not exit)."""
        pids = self.daemon_pids(node)
        if not pids:
            return None
        kill_pids(pids, signal.SIGTERM)
        try:
            return self._wait_pids_gone(node, pids, timeout, f"daemon on {node} to exit after SIGTERM")
        except TimeoutError:
            kill_pids(pids, signal.SIGKILL)
            self._wait_pids_gone(node, pids, 5, f"daemon on {node} to exit after SIGKILL")
            raise LabError(f"daemon on {node} ignored SIGTERM for {timeout}s; killed")

    def crash(self, node):
        """Fail like a host: eth0 down FIRST (it says nothing more), then SIGKILL the daemon."""
        self.net.set_link(node, up=False)
        pids = self.daemon_pids(node)
        kill_pids(pids, signal.SIGKILL)
        if pids:
            self._wait_pids_gone(node, pids, 5, f"daemon on {node} to die after SIGKILL")

    def stop_all(self):
        """SIGTERM the daemons, SIGKILL the rest, reap them all; return what did not exit."""
        errors = []
        for key, p in list(self.procs.items()):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM if key[1] == "daemon" else signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for key, p in list(self.procs.items()):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    errors.append(f"{key} did not exit")
        return errors

    # ---- commands and fetches in a namespace
    def run_in(self, node, args, timeout=60, check=False, input=None):
        cp = subprocess.run(["ip", "netns", "exec", self.net.ns(node)] + list(args), input=input,
                            capture_output=True, timeout=timeout)
        if check and cp.returncode != 0:
            raise LabError(f"{args} in {node} failed ({cp.returncode}): {cp.stderr.decode(errors='replace')}")
        return cp

    def curl_fetch(self, path, base=f"http://{ADVERTISED_IP}", method=None, data_file=None,
                   max_time=30, keep_body=False, extra=(), node="client", timeout=None):
        """Fetch ``base + path`` with curl from the client namespace.

        ``data_file``: POST (or ``method``) the file's bytes.  Returns a FetchResult with
        rc, status, size, sha256, time_starttransfer, time_total (and body if keep_body).
        """
        if not path.startswith("/"):
            path = "/" + path
        client_dir = self.layout.node_dir("client")
        os.makedirs(client_dir, exist_ok=True)
        out = os.path.join(client_dir, f"dl-{os.getpid()}-{secrets.token_hex(4)}")
        args = ["curl", "-sS", "-o", out, "--max-time", str(max_time),
                "-w", "%{http_code} %{size_download} %{time_starttransfer} %{time_total}"]
        if data_file is not None:
            args += ["--data-binary", "@" + data_file, "-H", "Content-Type: application/octet-stream"]
        if method:
            args += ["-X", method]
        args += list(extra) + [base + path]
        try:
            cp = self.run_in(node, args, timeout=timeout or (max_time + 10))
            fields = cp.stdout.decode().split()
            status, size, tst, tt = (int(fields[0]), int(fields[1]), float(fields[2]), float(fields[3])) \
                if len(fields) == 4 else (0, 0, 0.0, 0.0)
            h = hashlib.sha256()
            body = bytearray() if keep_body else None
            n = 0
            if os.path.exists(out):
                with open(out, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                        n += len(chunk)
                        if keep_body:
                            body += chunk
            return FetchResult(rc=cp.returncode, status=status, size=n, sha256=h.hexdigest(),
                               time_starttransfer=tst, time_total=tt,
                               body=bytes(body) if keep_body else None,
                               stderr=cp.stderr.decode(errors="replace"))
        finally:
            try:
                os.unlink(out)
            except FileNotFoundError:
                pass


"""Understudy network-namespace lab (Python 3 standard library only).

Topology (all names carry a per-lab prefix ``us<4 hex>``, e.g. ``us3fa2``):

    <p>-lan      bridge br0 with ports v-client, v-primary, v-backup (nothing else)
    <p>-client   eth0 198.18.0.2/24
    <p>-primary  eth0 198.18.0.11/24, nginx 127.0.0.1:8080, echo back-end 127.0.0.1:9000
    <p>-backup   eth0 198.18.0.12/24, nginx 127.0.0.1:8080, echo back-end 127.0.0.1:9000

Nothing links to the root namespace; only 198.18.0.0/15 addresses are used.
Everything the lab creates is removed by ``down()`` (also via atexit and
SIGINT/SIGTERM handlers), and ``cleanup_stale(prefix)`` / ``cleanup_orphans()``
remove leftovers by name.  See lab/README.md.
"""

import atexit
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB_DIR = os.path.dirname(os.path.abspath(__file__))
STATE_DIR = os.environ.get("UNDERSTUDY_LAB_STATE_DIR", "/run/understudy-lab")
PREFIX_RE = re.compile(r"^us[0-9a-f]{4}$")
NS_RE = re.compile(r"^(us[0-9a-f]{4})-(lan|client|primary|backup)$")

SUBNET = "198.18.0.0/24"
PREFIXLEN = 24
ADVERTISED_IP = "198.18.0.100"
ADVERTISED = f"{ADVERTISED_IP}:80"
NODE_IPS = {"client": "198.18.0.2", "primary": "198.18.0.11", "backup": "198.18.0.12"}
NODES = ("client", "primary", "backup")
SERVER_NODES = ("primary", "backup")
NGINX_PORT = 8080
ECHO_PORT = 9000
MTU = 1500
OFFLOADS = ["tx", "off", "tso", "off", "gso", "off", "sg", "off", "gro", "off"]
NFT_TABLE = "understudy_lab"
NFT_CHAIN = "loss"  # 'fwd' is reserved in nft
FIXED_MTIME = 1700000000  # 2023-11-14T22:13:20Z, identical on every file and node

# name -> size; URL path is /f/<name>
CONTENT_SIZES = {
    "0.bin": 0,
    "1k.bin": 1 << 10,
    "5k.bin": 5 << 10,
    "10k.bin": 10 << 10,
    "100k.bin": 100 << 10,
    "1m.bin": 1 << 20,
    "64m.bin": 64 << 20,
}


class LabError(RuntimeError):
    pass


class BinaryMissing(LabError):
    pass


# --------------------------------------------------------------------------- helpers

def sh(args, check=True, timeout=30, input=None, capture=True):
    """Run a command (list), return CompletedProcess; raise LabError with output on failure."""
    try:
        cp = subprocess.run(args, input=input, capture_output=capture, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"command timed out after {timeout}s: {' '.join(map(str, args))}") from e
    if check and cp.returncode != 0:
        err = cp.stderr.decode(errors="replace").strip() if capture else ""
        raise LabError(f"command failed ({cp.returncode}): {' '.join(map(str, args))}\n{err}")
    return cp


def wait_for(predicate, timeout, what, interval=0.02, details=None):
    """Poll ``predicate()`` until it returns a truthy value (returned) or ``timeout`` s pass.

    Exceptions from ``predicate`` count as "not yet", except LabError, which is re-raised
    at once (use it for definite failures such as "the server process exited").

    On timeout raise TimeoutError("timed out after Ns waiting for <what>; <details()>").
    The sleep between polls is only the polling interval, never a stand-in for an event.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except LabError:  # a definite failure (e.g. the process died): stop waiting
            raise
        except Exception as e:  # keep polling; report the last error
            last_exc = e
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f"; last error: {last_exc!r}"
            if details is not None:
                try:
                    msg += f"; {details()}"
                except Exception as e:
                    msg += f"; (details failed: {e!r})"
            raise TimeoutError(msg)
        time.sleep(interval)


def ns_pids(ns):
    cp = sh(["ip", "netns", "pids", ns], check=False)
    if cp.returncode != 0:
        return []
    return [int(x) for x in cp.stdout.split()]


def list_netns():
    cp = sh(["ip", "-j", "netns", "list"], check=False)
    out = cp.stdout.decode().strip()
    if cp.returncode != 0 or not out:
        return []
    return [e["name"] for e in json.loads(out)]


def _proc_start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_alive(pid, start_time=None):
    st = _proc_start_time(pid)
    return st is not None and (start_time is None or st == start_time)


def _kill_pids(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _kill_namespace_processes(ns, timeout=10):
    """SIGTERM then SIGKILL every process in ``ns``; wait until none is left."""
    pids = ns_pids(ns)
    if not pids:
        return
    _kill_pids(pids, signal.SIGTERM)
    try:
        wait_for(lambda: not ns_pids(ns), 2, f"processes in {ns} to exit after SIGTERM")
        return
    except TimeoutError:
        pass
    _kill_pids(ns_pids(ns), signal.SIGKILL)
    wait_for(lambda: not ns_pids(ns), timeout, f"processes in {ns} to exit after SIGKILL",
             details=lambda: f"left: {ns_pids(ns)}")


def _state_path(prefix):
    return os.path.join(STATE_DIR, f"{prefix}.json")


def read_state(prefix):
    try:
        with open(_state_path(prefix)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def list_states():
    try:
        names = os.listdir(STATE_DIR)
    except FileNotFoundError:
        return []
    out = []
    for n in sorted(names):
        if n.endswith(".json") and PREFIX_RE.match(n[:-5]):
            st = read_state(n[:-5])
            if st:
                out.append(st)
    return out


def cleanup_stale(prefix, remove_workdir=None):
    """Remove every namespace named ``<prefix>-*`` (killing its processes) and the state file.

    The workdir is removed only if the lab's state file says the lab created it
    (or ``remove_workdir`` is True); nothing else outside namespaces is touched.
    """
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"not a lab prefix: {prefix!r}")
    st = read_state(prefix)
    nss = [n for n in list_netns() if n.startswith(prefix + "-")]
    # Servers first, lan last (lan has no processes normally).
    for ns in sorted(nss, key=lambda n: n.endswith("-lan")):
        _kill_namespace_processes(ns)
    for ns in nss:
        sh(["ip", "netns", "del", ns], check=False)
    if st:
        wd = st.get("workdir")
        rm = remove_workdir if remove_workdir is not None else (st.get("owns_workdir") and not st.get("keep_workdir"))
        if rm and wd and os.path.isdir(wd):
            shutil.rmtree(wd, ignore_errors=True)
    try:
        os.unlink(_state_path(prefix))
    except FileNotFoundError:
        pass
    left = [n for n in list_netns() if n.startswith(prefix + "-")]
    if left:
        raise LabError(f"namespaces left after cleanup: {left}")


def cleanup_orphans():
    """Clean labs whose owning process died without cleaning up (e.g. SIGKILLed by a timeout).

    Only labs with a state file naming a dead, non-persistent owner are touched, so
    labs of parallel test processes are left alone.
    """
    cleaned = []
    for st in list_states():
        if st.get("persistent"):
            continue
        if not _pid_alive(st.get("owner_pid", -1), st.get("owner_start")):
            cleanup_stale(st["prefix"])
            cleaned.append(st["prefix"])
    return cleaned


def all_lab_prefixes():
    """Prefixes of every lab on this machine (from namespaces and state files)."""
    p = {m.group(1) for m in (NS_RE.match(n) for n in list_netns()) if m}
    p |= {st["prefix"] for st in list_states()}
    return sorted(p)


def make_content(directory, seed=b"understudy-lab-v1"):
    """Write the deterministic test files into ``directory/f/``; return the manifest.

    Bytes of file NAME are SHAKE-256(seed + b":" + NAME) truncated to its size, so
    they are identical on every machine and run.  Every file (and the dirs) gets the
    same fixed mtime so nginx's ETag/Last-Modified agree on both nodes.
    Manifest: {"/f/1k.bin": (size, sha256hex), ...}
    """
    fdir = os.path.join(directory, "f")
    os.makedirs(fdir, exist_ok=True)
    manifest = {}
    for name, size in CONTENT_SIZES.items():
        data = hashlib.shake_256(seed + b":" + name.encode()).digest(size) if size else b""
        path = os.path.join(fdir, name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
        manifest["/f/" + name] = (size, hashlib.sha256(data).hexdigest())
    for d in (fdir, directory):
        os.utime(d, (FIXED_MTIME, FIXED_MTIME))
    return manifest


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


@dataclasses.dataclass
class LossRule:
    handle: int
    comment: str
    expr: str


# --------------------------------------------------------------------------- global cleanup

_live_labs = set()
_live_lock = threading.RLock()
_handlers_installed = False
_prev_handlers = {}


def _cleanup_all():
    with _live_lock:
        labs = list(_live_labs)
    for lab in labs:
        try:
            lab.down()
        except Exception as e:  # keep going: clean as much as possible
            print(f"understudy_lab: cleanup of {lab.prefix} failed: {e}", flush=True)


def _signal_handler(signum, frame):
    _cleanup_all()
    prev = _prev_handlers.get(signum)
    if callable(prev) and prev not in (signal.SIG_IGN, signal.SIG_DFL):
        return prev(signum, frame)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _install_handlers():
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    atexit.register(_cleanup_all)
    for sig in (signal.SIGINT, signal.SIGTERM):
        _prev_handlers[sig] = signal.getsignal(sig)
        signal.signal(sig, _signal_handler)
    _handlers_installed = True


# --------------------------------------------------------------------------- the lab

class Lab:
    """A client, a primary and a backup namespace joined by a bridge in a lan namespace.

    Use as a context manager::

        with Lab() as lab:            # up() on enter, down() on exit (also on failure)
            r = lab.curl_fetch("/f/1k.bin")
    """

    def __init__(self, prefix=None, workdir=None, binary="build/understudy",
                 lan_listen=False, keep_workdir=None, persistent=False, nginx_workers=2,
                 nginx_worker_connections=4096, nginx_rlimit_nofile=None, nginx_access_log=True,
                 nginx_extra_conf=None):
        if prefix is not None and not PREFIX_RE.match(prefix):
            raise ValueError(f"prefix must look like us<4 hex>, got {prefix!r}")
        self._auto_prefix = prefix is None
        self.prefix = prefix or self._fresh_prefix()
        self.owns_workdir = workdir is None
        self.workdir = os.path.abspath(workdir) if workdir else None
        if binary == "build/understudy" and os.environ.get("UNDERSTUDY_BINARY"):
            binary = os.environ["UNDERSTUDY_BINARY"]  # set by CTest to the built target
        self.binary = binary if os.path.isabs(binary) else os.path.join(REPO_ROOT, binary)
        self.lan_listen = lan_listen  # nginx also on <node ip>:8080 (baseline tests)
        if keep_workdir is None:
            keep_workdir = os.environ.get("UNDERSTUDY_LAB_KEEP", "") not in ("", "0")
        self.keep_workdir = keep_workdir
        self.persistent = persistent   # CLI labs: survive the creating process
        self.nginx_workers = nginx_workers
        # Benchmark knobs (defaults keep the tests' nginx as it was): worker_connections,
        # worker_rlimit_nofile (None: not set), access log on/off, and extra text for the
        # http block (a str, or a callable(node) -> str, e.g. a reverse-proxy server block).
        self.nginx_worker_connections = nginx_worker_connections
        self.nginx_rlimit_nofile = nginx_rlimit_nofile
        self.nginx_access_log = nginx_access_log
        self.nginx_extra_conf = nginx_extra_conf
        self.manifest = {}
        self.procs = {}               # (node, kind) -> Popen, kind in nginx/echo/daemon
        self._logs = {}
        self._loss_seq = 0
        self._is_up = False
        self._down_lock = threading.RLock()

    # ---- names
    @staticmethod
    def _fresh_prefix():
        existing = set(all_lab_prefixes())
        for _ in range(1000):
            p = "us" + secrets.token_hex(2)
            if p not in existing and not os.path.exists(_state_path(p)):
                return p
        raise LabError("could not find a free lab prefix")

    def ns(self, node):
        if node not in NODES and node != "lan":
            raise ValueError(f"unknown node {node!r}")
        return f"{self.prefix}-{node}"

    @property
    def namespaces(self):
        return [self.ns(n) for n in ("lan",) + NODES]

    def node_dir(self, node):
        return os.path.join(self.workdir, node)

    def config_path(self, node):
        return os.path.join(self.node_dir(node), "understudy.toml")

    @property
    def key_path(self):
        return os.path.join(self.workdir, "peer.key")

    @property
    def www(self):
        return os.path.join(self.workdir, "www")

    # ---- context manager
    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    # ---- state file
    def _claim_prefix(self):
        """Atomically reserve the prefix (O_EXCL state file) so parallel labs never share one."""
        os.makedirs(STATE_DIR, exist_ok=True)
        auto = self._auto_prefix
        for _ in range(100):
            try:
                os.close(os.open(_state_path(self.prefix), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                if not auto:
                    raise LabError(f"lab prefix {self.prefix} is in use ({_state_path(self.prefix)})")
                self.prefix = self._fresh_prefix()
                continue
            if any(n.startswith(self.prefix + "-") for n in list_netns()):
                os.unlink(_state_path(self.prefix))
                if not auto:
                    raise LabError(f"namespaces {self.prefix}-* exist already (lab down --all?)")
                self.prefix = self._fresh_prefix()
                continue
            self._is_up = True  # from here on, down() owns this prefix
            return
        raise LabError("could not claim a lab prefix")

    def _write_state(self):
        os.makedirs(STATE_DIR, exist_ok=True)
        st = {
            "prefix": self.prefix, "workdir": self.workdir, "binary": self.binary,
            "lan_listen": self.lan_listen, "owns_workdir": self.owns_workdir,
            "keep_workdir": self.keep_workdir, "persistent": self.persistent,
            "owner_pid": os.getpid(), "owner_start": _proc_start_time(os.getpid()),
            "namespaces": self.namespaces,
        }
        tmp = _state_path(self.prefix) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=1)
        os.replace(tmp, _state_path(self.prefix))

    @classmethod
    def attach(cls, prefix):
        """Re-create a Lab object for a lab made by another process (CLI use)."""
        st = read_state(prefix)
        if not st:
            raise LabError(f"no state for lab {prefix} in {STATE_DIR}")
        lab = cls(prefix=prefix, workdir=st["workdir"], binary=st["binary"],
                  lan_listen=st.get("lan_listen", False), keep_workdir=st.get("keep_workdir"),
                  persistent=st.get("persistent", True))
        lab.owns_workdir = st.get("owns_workdir", False)
        lab._is_up = True
        return lab

    # ---- up
    def up(self):
        """Create namespaces, links, content, nginx and echo back-ends; wait until they serve."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces)")
        cleanup_orphans()
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix=f"understudy-lab-{self.prefix}-")
        os.makedirs(self.workdir, exist_ok=True)
        if len(os.path.join(self.workdir, "primary", "control.sock")) > 100:
            raise LabError(f"workdir path too long for a unix socket: {self.workdir}")
        self._claim_prefix()
        with _live_lock:
            _live_labs.add(self)
        if not self.persistent:
            _install_handlers()
        self._write_state()
        self._make_network()
        self.manifest = make_content(self.www)
        for node in SERVER_NODES:
            self._start_echo(node)
            self._start_nginx(node)
        for node in SERVER_NODES:
            self.wait_http(node, "127.0.0.1", NGINX_PORT, "/f/0.bin", what=f"nginx on {node}")
            self.wait_http(node, "127.0.0.1", NGINX_PORT, "/echo/ping", what=f"echo back-end via nginx on {node}",
                           want_2xx=True)
        return self

    def _nsexec(self, node, args, **kw):
        return sh(["ip", "netns", "exec", self.ns(node)] + list(args), **kw)

    def _sysctl(self, node, *settings):
        self._nsexec(node, ["sysctl", "-q", "-w"] + list(settings))

    def _make_network(self):
        lan = self.ns("lan")
        for ns in self.namespaces:
            sh(["ip", "netns", "add", ns])
        for node in ("lan",) + NODES:
            sh(["ip", "-n", self.ns(node), "link", "set", "lo", "up"])
            self._sysctl(node, "net.ipv6.conf.all.disable_ipv6=1",
                         "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.ip_forward=0")
        sh(["ip", "-n", lan, "link", "add", "br0", "type", "bridge", "stp_state", "0"])
        sh(["ip", "-n", lan, "link", "set", "br0", "mtu", str(MTU), "up"])
        for node in NODES:
            port = f"v-{node}"
            sh(["ip", "-n", lan, "link", "add", port, "mtu", str(MTU), "type", "veth",
                "peer", "name", "eth0", "mtu", str(MTU), "netns", self.ns(node)])
            sh(["ip", "-n", lan, "link", "set", port, "master", "br0"])
            self._nsexec("lan", ["ethtool", "-K", port] + OFFLOADS)
            self._nsexec(node, ["ethtool", "-K", "eth0"] + OFFLOADS)
            sh(["ip", "-n", self.ns(node), "addr", "add", f"{NODE_IPS[node]}/{PREFIXLEN}", "dev", "eth0"])
            sh(["ip", "-n", lan, "link", "set", port, "up"])
            sh(["ip", "-n", self.ns(node), "link", "set", "eth0", "up"])
        sh(["ip", "netns", "exec", lan, "nft", "-f", "-"], input=(
            f"table bridge {NFT_TABLE} {{\n"
            f"  chain {NFT_CHAIN} {{ type filter hook forward priority 0; policy accept; }}\n"
            f"}}\n").encode())

    def _spawn(self, node, kind, args, log_name, env=None):
        os.makedirs(self.node_dir(node), exist_ok=True)
        log = os.path.join(self.node_dir(node), log_name)
        fh = open(log, "ab")
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(node)] + list(args),
                             stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=e, start_new_session=True, cwd=self.node_dir(node))
        fh.close()
        self.procs[(node, kind)] = p
        self._logs[(node, kind)] = log
        return p

    def _start_echo(self, node):
        self._spawn(node, "echo", ["/usr/bin/python3", os.path.join(LAB_DIR, "echo_backend.py"),
                                   "--port", str(ECHO_PORT), "--name", node], "echo.log")

    def nginx_dir(self, node):
        return os.path.join(self.node_dir(node), "nginx")

    def _nginx_conf(self, node):
        d = self.nginx_dir(node)
        listens = f"    listen 127.0.0.1:{NGINX_PORT};\n"
        if self.lan_listen:
            listens += f"    listen {NODE_IPS[node]}:{NGINX_PORT};\n"
        extra = self.nginx_extra_conf(node) if callable(self.nginx_extra_conf) else (self.nginx_extra_conf or "")
        rlimit = f"worker_rlimit_nofile {int(self.nginx_rlimit_nofile)};\n" if self.nginx_rlimit_nofile else ""
        access_log = f"{d}/logs/access.log" if self.nginx_access_log else "off"
        return f"""# generated by lab/understudy_lab.py for {self.prefix}-{node}
daemon off;
master_process on;
user root;
worker_processes {self.nginx_workers};
{rlimit}pid {d}/nginx.pid;
lock_file {d}/nginx.lock;
error_log {d}/logs/error.log info;
events {{ worker_connections {int(self.nginx_worker_connections)}; }}
http {{
  types {{ application/octet-stream bin; text/plain txt; }}
  default_type application/octet-stream;
  access_log {access_log};
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000;
  keepalive_timeout 75s;
  client_max_body_size 0;
  server_tokens off;
  server {{
{listens}    server_name _;
    location /f/ {{ root {self.www}; }}
    location /echo {{
      proxy_pass http://127.0.0.1:{ECHO_PORT};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 600s;
      proxy_send_timeout 600s;
    }}
  }}
{extra}}}
"""

    def _start_nginx(self, node):
        d = self.nginx_dir(node)
        for sub in ("logs", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self._nginx_conf(node))
        self._spawn(node, "nginx", ["nginx", "-p", d + "/", "-c", conf, "-e", os.path.join(d, "logs", "error.log")],
                    "nginx.out")

    def wait_http(self, node, host, port, path="/", timeout=15, what=None, want_2xx=False):
        """Wait until an HTTP GET from inside ``node`` to host:port/path gets any HTTP status
        (with ``want_2xx``, a 2xx one: a proxy answers 502 before its back-end listens)."""
        url = f"http://{host}:{port}{path}"

        def probe():
            for key, p in self.procs.items():
                if key[0] == node and key[1] in ("nginx", "echo") and p.poll() is not None:
                    raise LabError(f"{key[1]} on {node} exited with {p.returncode}: {self.log_tail(node, key[1])}")
            cp = self._nsexec(node, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                     "--max-time", "2", url], check=False)
            code = cp.stdout.strip()
            if want_2xx:
                return cp.returncode == 0 and code.startswith(b"2")
            return cp.returncode == 0 and code not in (b"", b"000")
        return wait_for(probe, timeout, what or f"{url} in {self.ns(node)}")

    def log_tail(self, node, kind, n=2000):
        log = self._logs.get((node, kind)) or os.path.join(self.node_dir(node), f"{kind}.log")
        try:
            with open(log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    # ---- daemon
    def _need_binary(self):
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            raise BinaryMissing(f"understudy binary not found or not executable: {self.binary} (build it first)")

    def keygen(self):
        """Write workdir/peer.key with ``<binary> keygen``; return its path."""
        self._need_binary()
        with open(self.key_path, "wb") as f:
            cp = subprocess.run([self.binary, "keygen"], stdout=f, stderr=subprocess.PIPE, timeout=30)
        if cp.returncode != 0:
            raise LabError(f"{self.binary} keygen failed: {cp.stderr.decode(errors='replace')}")
        os.chmod(self.key_path, 0o600)
        return self.key_path

    def write_config(self, node, **overrides):
        """Write workdir/<node>/understudy.toml; return its path.

        ``overrides`` are ``section_key=value`` (e.g. heartbeat_interval_ms=50,
        node_server="127.0.0.1:8081") or ``section={"key": value}``; new keys/sections
        are appended.  Values: str -> quoted, bool -> true/false, int/float as is.
        """
        if node not in SERVER_NODES:
            raise ValueError("write_config is for primary/backup")
        peer = "backup" if node == "primary" else "primary"
        sections = {
            "service": {"advertised": ADVERTISED, "interface": "eth0"},
            "node": {"role": node, "address": NODE_IPS[node], "server": f"127.0.0.1:{NGINX_PORT}",
                     "control_socket": os.path.join(self.node_dir(node), "control.sock")},
            "peer": {"address": NODE_IPS[peer], "key_file": self.key_path},
            "heartbeat": {"interval_ms": 20, "timeout_ms": 100},
        }
        for k, v in overrides.items():
            if isinstance(v, dict):
                sections.setdefault(k, {}).update(v)
                continue
            sec, sep, key = k.partition("_")
            if not sep:
                raise ValueError(f"override {k!r}: use section_key=value or section={{...}}")
            sections.setdefault(sec, {})[key] = v
        lines = []
        for sec, kv in sections.items():
            lines.append(f"[{sec}]")
            # Align '=' like the documented template: short keys are padded, long ones
            # (control_socket) are not.
            width = max((len(k) for k in kv if len(k) <= 12), default=0)
            for key, v in kv.items():
                lines.append(f"{key.ljust(width)} = {_toml_value(v)}")
        os.makedirs(self.node_dir(node), exist_ok=True)
        path = self.config_path(node)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start_node(self, node, env=None, config=None):
        """Start ``<binary> run --config`` in the node's namespace (log: workdir/<node>/understudy.log)."""
        self._need_binary()
        p = self.procs.get((node, "daemon"))
        if p is not None and p.poll() is None:
            raise LabError(f"daemon on {node} already running (pid {p.pid})")
        cfg = config or self.config_path(node)
        if not os.path.exists(cfg):
            cfg = self.write_config(node)
        return self._spawn(node, "daemon", [self.binary, "run", "--config", cfg], "understudy.log", env=env)

    def node_status(self, node, timeout=5):
        """``<binary> status --config <path> --json`` in the node's namespace -> dict or None."""
        self._need_binary()
        try:
            cp = self._nsexec(node, [self.binary, "status", "--config", self.config_path(node), "--json"],
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

    def _daemon_pids(self, node):
        """Daemon processes in the node namespace (tracked or started by someone else)."""
        pids = set()
        p = self.procs.get((node, "daemon"))
        if p is not None and p.poll() is None:
            pids.add(p.pid)
        real = os.path.realpath(self.binary)
        for pid in ns_pids(self.ns(node)):
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
            return not any(_pid_alive(x) and _proc_state(x) != "Z" for x in pids)
        wait_for(gone, timeout, what)
        if p is not None and p.pid in pids:
            p.wait(timeout=timeout)
            return p.returncode
        return None

    def stop_node(self, node, timeout=10):
        """SIGTERM the daemon and wait for it (SIGKILL + LabError if it does not exit)."""
        pids = self._daemon_pids(node)
        if not pids:
            return None
        _kill_pids(pids, signal.SIGTERM)
        try:
            return self._wait_pids_gone(node, pids, timeout, f"daemon on {node} to exit after SIGTERM")
        except TimeoutError:
            _kill_pids(pids, signal.SIGKILL)
            self._wait_pids_gone(node, pids, 5, f"daemon on {node} to exit after SIGKILL")
            raise LabError(f"daemon on {node} ignored SIGTERM for {timeout}s; killed")

    def crash(self, node):
        """Fail like a host: eth0 down FIRST (it says nothing more), then SIGKILL the daemon."""
        sh(["ip", "-n", self.ns(node), "link", "set", "eth0", "down"])
        pids = self._daemon_pids(node)
        _kill_pids(pids, signal.SIGKILL)
        if pids:
            self._wait_pids_gone(node, pids, 5, f"daemon on {node} to die after SIGKILL")

    def link_up(self, node):
        """Bring a crashed node's eth0 back up (to restart/rejoin it)."""
        sh(["ip", "-n", self.ns(node), "link", "set", "eth0", "up"])

    def link_down(self, node):
        sh(["ip", "-n", self.ns(node), "link", "set", "eth0", "down"])

    # ---- client
    def run_client(self, args, timeout=60, check=False, input=None):
        """Run a command (list) in the client namespace; return CompletedProcess (bytes)."""
        return self.run_in("client", args, timeout=timeout, check=check, input=input)

    def run_in(self, node, args, timeout=60, check=False, input=None):
        cp = subprocess.run(["ip", "netns", "exec", self.ns(node)] + list(args), input=input,
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
        os.makedirs(self.node_dir("client"), exist_ok=True)
        out = os.path.join(self.node_dir("client"), f"dl-{os.getpid()}-{secrets.token_hex(4)}")
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

    def make_body(self, size, seed=b"body"):
        """Write a deterministic request body file into workdir; return (path, sha256)."""
        data = hashlib.shake_256(seed + b":" + str(size).encode()).digest(size) if size else b""
        path = os.path.join(self.workdir, f"body-{seed.decode(errors='replace')}-{size}.bin")
        with open(path, "wb") as f:
            f.write(data)
        return path, hashlib.sha256(data).hexdigest()

    # ---- loss on the bridge
    def _nft(self, script=None, args=None):
        base = ["ip", "netns", "exec", self.ns("lan"), "nft"]
        if script is not None:
            return sh(base + ["-f", "-"], input=script.encode())
        return sh(base + list(args))

    def _add_rule(self, from_node, to_node, match, action):
        self._loss_seq += 1
        comment = f"lab-{self._loss_seq}"
        parts = []
        if from_node:
            parts.append(f'iifname "v-{self._check_node(from_node)}"')
        if to_node:
            parts.append(f'oifname "v-{self._check_node(to_node)}"')
        if match:
            parts.append(match)
        if action:
            parts.append(action)
        expr = " ".join(parts)
        cp = self._nft(args=["--echo", "--handle", "add", "rule", "bridge", NFT_TABLE, NFT_CHAIN,
                             f'{expr} counter drop comment "{comment}"'])
        m = re.search(rb"# handle (\d+)", cp.stdout)
        handle = int(m.group(1)) if m else self._handle_for(comment)
        return LossRule(handle=handle, comment=comment, expr=expr)

    @staticmethod
    def _check_node(node):
        if node not in NODES:
            raise ValueError(f"unknown node {node!r}")
        return node

    def drop_once(self, from_node=None, to_node=None, match=""):
        """Drop exactly the first packet bridged from ``from_node`` to ``to_node`` matching ``match``.

        (``quota until 1 bytes`` matches nothing: the kernel adds the packet's length before
        comparing. ``numgen inc mod 4000000000 == 0`` is true only for the first evaluation,
        and it is evaluated only when the earlier expressions matched.)
        """
        return self._add_rule(from_node, to_node, match, "numgen inc mod 4000000000 == 0")

    def drop_random(self, percent, from_node=None, to_node=None, match=""):
        """Drop ``percent``% (0..100) of matching bridged packets at random."""
        if not 0 <= percent <= 100:
            raise ValueError("percent must be 0..100")
        if int(percent) >= 100:  # nft rejects "mod 100 < 100"
            return self.drop_all(from_node, to_node, match)
        return self._add_rule(from_node, to_node, match, f"numgen random mod 100 < {int(percent)}")

    def drop_all(self, from_node=None, to_node=None, match=""):
        """Drop every matching bridged packet until the rule is removed (a partition)."""
        return self._add_rule(from_node, to_node, match, "")

    def loss_rules(self):
        """[{handle, comment, expr, packets, bytes}] for the rules of the loss chain."""
        cp = self._nft(args=["-j", "-a", "list", "chain", "bridge", NFT_TABLE, NFT_CHAIN])
        out = []
        for item in json.loads(cp.stdout.decode())["nftables"]:
            r = item.get("rule")
            if not r:
                continue
            pk = by = 0
            for e in r.get("expr", []):
                if "counter" in e:
                    pk, by = e["counter"]["packets"], e["counter"]["bytes"]
            out.append({"handle": r["handle"], "comment": r.get("comment", ""), "packets": pk, "bytes": by})
        return out

    def _handle_for(self, comment):
        for r in self.loss_rules():
            if r["comment"] == comment:
                return r["handle"]
        raise LabError(f"rule {comment} not found")

    def dropped(self, rule):
        """Packets dropped so far by ``rule`` (a LossRule or handle)."""
        h = rule.handle if isinstance(rule, LossRule) else int(rule)
        for r in self.loss_rules():
            if r["handle"] == h:
                return r["packets"]
        raise LabError(f"no loss rule with handle {h}")

    def remove_loss(self, rule):
        h = rule.handle if isinstance(rule, LossRule) else int(rule)
        self._nft(args=["delete", "rule", "bridge", NFT_TABLE, NFT_CHAIN, "handle", str(h)])

    def clear_loss(self):
        self._nft(args=["flush", "chain", "bridge", NFT_TABLE, NFT_CHAIN])

    # ---- down
    def down(self):
        """Stop every process, delete the namespaces (and an auto-created workdir). Idempotent."""
        with self._down_lock:
            if not self._is_up:
                return
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
            try:
                cleanup_stale(self.prefix, remove_workdir=self.owns_workdir and not self.keep_workdir)
            except Exception as e:
                errors.append(str(e))
            self._is_up = False
            with _live_lock:
                _live_labs.discard(self)
            if errors:
                raise LabError("lab down: " + "; ".join(errors))

    def detach(self):
        """Forget this lab in this process (it keeps running; CLI use)."""
        with _live_lock:
            _live_labs.discard(self)
        self._is_up = False


def _proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))

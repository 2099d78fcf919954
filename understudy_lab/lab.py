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

``Lab`` composes the network (topology.py), the files it writes (configs.py) and the processes
it runs (processes.py). This module also re-exports the helpers callers use with the lab, so
``from understudy_lab import lab as ul`` is the one import they need.
"""

import atexit
import dataclasses
import os
import signal
import tempfile
import threading

from understudy_lab.common import (ADVERTISED, ADVERTISED_IP, ECHO_PORT, NGINX_PORT, NGINX_PROXY_PORT, NODE_IPS,
                                   NODES, PREFIXLEN, REPO_ROOT, SERVER_NODES, SUBNET, BinaryMissing, LabError,
                                   pid_alive, proc_start_time, proc_state, python_module, sh, wait_for)
from understudy_lab.configs import (CONTENT_SIZES, FIXED_MTIME, Layout, keygen, make_body, make_content,
                                    nginx_conf, read_identity_log, write_daemon_config, write_nginx_conf)
from understudy_lab.processes import FetchResult, Processes
from understudy_lab.topology import (PREFIX_RE, STATE_DIR, LossRule, Network, all_lab_prefixes, claim_prefix,
                                     cleanup_orphans, cleanup_stale, fresh_prefix, list_netns, list_states,
                                     ns_pids, read_state, state_path, write_state)

__all__ = [
    "ADVERTISED", "ADVERTISED_IP", "CONTENT_SIZES", "ECHO_PORT", "FIXED_MTIME", "NGINX_PORT", "NGINX_PROXY_PORT",
    "NODE_IPS",
    "NODES", "PREFIXLEN", "PREFIX_RE", "REPO_ROOT", "SERVER_NODES", "STATE_DIR", "SUBNET",
    "BinaryMissing", "FetchResult", "Lab", "LabError", "LabOptions", "LossRule",
    "all_lab_prefixes", "cleanup_orphans", "cleanup_stale", "list_netns", "list_states", "make_content",
    "ns_pids", "pid_alive", "proc_state", "python_module", "read_state", "sh", "state_path", "wait_for",
]


@dataclasses.dataclass
class LabOptions:
    prefix: str | None = None       # us<4 hex>; None: a fresh one
    workdir: str | None = None      # None: a temporary directory, removed by down()
    binary: str = "build/understudy"  # relative to the repo; $UNDERSTUDY_BINARY replaces the default
    lan_listen: bool = False        # nginx also on <node ip>:8080 (baseline tests)
    keep_workdir: bool | None = None  # None: $UNDERSTUDY_LAB_KEEP
    persistent: bool = False        # CLI labs: survive the creating process
    nginx_workers: int = 2
    # True: every veth keeps the kernel's default offloads (TSO, GSO, checksum; the daemon cuts
    # super-segments itself). False: GRO, TSO, GSO, sg and tx checksum off on both ends, as the
    # daemon needed before issue 11.
    offloads: bool = True
    # nginx also writes logs/identity.log and listens with proxy_protocol on NGINX_PROXY_PORT
    # (the client's identity tests, docs/MESSAGE_LAYER.md).
    nginx_identity: bool = False


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

    ``Lab(LabOptions(...))`` or ``Lab(**fields of LabOptions)``. Subclasses adapt the lab through
    ``nginx_conf(node)`` and ``start_echo(node)``.
    """

    def __init__(self, options=None, **kw):
        if options is not None and kw:
            raise TypeError("Lab: give LabOptions or keyword arguments, not both")
        o = options or LabOptions(**kw)
        if o.prefix is not None and not PREFIX_RE.match(o.prefix):
            raise ValueError(f"prefix must look like us<4 hex>, got {o.prefix!r}")
        self._auto_prefix = o.prefix is None
        self.owns_workdir = o.workdir is None
        binary = o.binary
        if binary == "build/understudy" and os.environ.get("UNDERSTUDY_BINARY"):
            binary = os.environ["UNDERSTUDY_BINARY"]  # set by CTest to the built target
        self.lan_listen = o.lan_listen
        self.keep_workdir = o.keep_workdir if o.keep_workdir is not None else \
            os.environ.get("UNDERSTUDY_LAB_KEEP", "") not in ("", "0")
        self.persistent = o.persistent
        self.nginx_workers = o.nginx_workers
        self.net = Network(o.prefix or fresh_prefix(), offloads=o.offloads)
        self.nginx_identity = o.nginx_identity
        self.files = Layout(os.path.abspath(o.workdir) if o.workdir else None)
        self.processes = Processes(self.net, self.files,
                                   binary if os.path.isabs(binary) else os.path.join(REPO_ROOT, binary))
        self.manifest = {}
        self._is_up = False
        self._down_lock = threading.RLock()

    # ---- what the components hold
    @property
    def prefix(self):
        return self.net.prefix

    @property
    def workdir(self):
        return self.files.workdir

    @property
    def binary(self):
        return self.processes.binary

    @property
    def procs(self):
        """(node, kind) -> Popen, kind in nginx/echo/daemon (or a caller's own)."""
        return self.processes.procs

    def ns(self, node):
        return self.net.ns(node)

    @property
    def namespaces(self):
        return self.net.namespaces

    def node_dir(self, node):
        return self.files.node_dir(node)

    def config_path(self, node):
        return self.files.config_path(node)

    def nginx_dir(self, node):
        return self.files.nginx_dir(node)

    @property
    def key_path(self):
        return self.files.key_path

    @property
    def www(self):
        return self.files.www

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
    def _write_state(self):
        write_state(self.prefix, {
            "prefix": self.prefix, "workdir": self.workdir, "binary": self.binary,
            "lan_listen": self.lan_listen, "owns_workdir": self.owns_workdir,
            "keep_workdir": self.keep_workdir, "persistent": self.persistent,
            "owner_pid": os.getpid(), "owner_start": proc_start_time(os.getpid()),
            "namespaces": self.namespaces,
        })

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
            self.files.workdir = tempfile.mkdtemp(prefix=f"understudy-lab-{self.prefix}-")
        os.makedirs(self.workdir, exist_ok=True)
        if len(os.path.join(self.workdir, "primary", "control.sock")) > 100:
            raise LabError(f"workdir path too long for a unix socket: {self.workdir}")
        self.net.prefix = claim_prefix(self.prefix, self._auto_prefix)
        self._is_up = True  # from here on, down() owns this prefix
        with _live_lock:
            _live_labs.add(self)
        if not self.persistent:
            _install_handlers()
        self._write_state()
        self.net.create()
        self.manifest = make_content(self.www)
        for node in SERVER_NODES:
            self.start_echo(node)
            self.processes.start_nginx(node, write_nginx_conf(self.files, node, self.nginx_conf(node)))
        for node in SERVER_NODES:
            self.wait_http(node, "127.0.0.1", NGINX_PORT, "/f/0.bin", what=f"nginx on {node}")
            self.wait_http(node, "127.0.0.1", NGINX_PORT, "/echo/ping", what=f"echo back-end via nginx on {node}",
                           want_2xx=True)
        return self

    def nginx_conf(self, node):
        """The text of the node's nginx.conf (a hook for subclasses)."""
        identity = {"identity_log": True, "proxy_protocol_port": NGINX_PROXY_PORT} if self.nginx_identity else {}
        return nginx_conf(self.files, self.prefix, node, lan_listen=self.lan_listen, workers=self.nginx_workers,
                          **identity)

    def identity_log(self, node):
        """What the node's nginx logged of each request's client (LabOptions.nginx_identity)."""
        return read_identity_log(self.files, node)

    def start_echo(self, node):
        """Start the node's echo back-end, answering under the node's name (a hook for subclasses)."""
        return self.processes.start_echo(node, name=node)

    def spawn(self, node, kind, args, log_name, env=None):
        return self.processes.spawn(node, kind, args, log_name, env=env)

    def wait_http(self, node, host, port, path="/", timeout=15, what=None, want_2xx=False):
        return self.processes.wait_http(node, host, port, path, timeout=timeout, what=what, want_2xx=want_2xx)

    def log_tail(self, node, kind, n=2000):
        return self.processes.log_tail(node, kind, n)

    # ---- daemon
    def keygen(self):
        """Write workdir/peer.key with ``<binary> keygen``; return its path."""
        return keygen(self.binary, self.key_path)

    def write_config(self, node, **overrides):
        """Write workdir/<node>/understudy.toml (see configs.write_daemon_config); return its path."""
        return write_daemon_config(self.files, node, **overrides)

    def start_node(self, node, env=None, config=None):
        """Start the daemon on ``node`` with ``config`` (default: its config, written if missing)."""
        return self.processes.start_daemon(node, config or self.config_path(node), env=env,
                                           write_default=lambda: self.write_config(node))

    def node_status(self, node, timeout=5):
        return self.processes.node_status(node, timeout=timeout)

    def wait_status(self, node, timeout=10, **expected):
        return self.processes.wait_status(node, timeout=timeout, **expected)

    def daemon_pids(self, node):
        return self.processes.daemon_pids(node)

    def stop_node(self, node, timeout=10):
        return self.processes.stop_node(node, timeout=timeout)

    def crash(self, node):
        return self.processes.crash(node)

    def link_up(self, node):
        """Bring a crashed node's eth0 back up (to restart/rejoin it)."""
        self.net.set_link(node, up=True)

    def restart_node(self, node, env=None, config=None):
        """Bring a crashed node back like a repaired host: eth0 up, then its daemon (same config)."""
        self.link_up(node)
        return self.start_node(node, env=env, config=config)

    def link_down(self, node):
        self.net.set_link(node, up=False)

    # ---- client
    def run_client(self, args, timeout=60, check=False, input=None):
        """Run a command (list) in the client namespace; return CompletedProcess (bytes)."""
        return self.run_in("client", args, timeout=timeout, check=check, input=input)

    def run_in(self, node, args, timeout=60, check=False, input=None):
        return self.processes.run_in(node, args, timeout=timeout, check=check, input=input)

    def curl_fetch(self, path, *args, **kw):
        return self.processes.curl_fetch(path, *args, **kw)

    def make_body(self, size, seed=b"body"):
        return make_body(self.workdir, size, seed)

    # ---- loss on the bridge
    def drop_once(self, from_node=None, to_node=None, match=""):
        return self.net.drop_once(from_node, to_node, match)

    def drop_random(self, percent, from_node=None, to_node=None, match=""):
        return self.net.drop_random(percent, from_node, to_node, match)

    def drop_all(self, from_node=None, to_node=None, match=""):
        return self.net.drop_all(from_node, to_node, match)

    def loss_rules(self):
        return self.net.loss_rules()

    def dropped(self, rule):
        return self.net.dropped(rule)

    def remove_loss(self, rule):
        return self.net.remove_loss(rule)

    def clear_loss(self):
        return self.net.clear_loss()

    # ---- down
    def down(self):
        """Stop every process, delete the namespaces (and an auto-created workdir). Idempotent."""
        with self._down_lock:
            if not self._is_up:
                return
            errors = self.processes.stop_all()
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

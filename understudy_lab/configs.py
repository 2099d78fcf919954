"""What the lab writes to disk: the workdir layout, the served content, the daemon's TOML, the
nginx configuration and the peer key."""

import hashlib
import json
import os
import subprocess

from understudy_lab.common import (ADVERTISED, ECHO_PORT, NGINX_PORT, NODE_IPS, SERVER_NODES,
                                   LabError, need_binary)

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


class Layout:
    """Paths in a lab's workdir (set when the lab comes up, if it was not given)."""

    def __init__(self, workdir=None):
        self.workdir = workdir

    def node_dir(self, node):
        return os.path.join(self.workdir, node)

    def config_path(self, node):
        return os.path.join(self.node_dir(node), "understudy.toml")

    def nginx_dir(self, node):
        return os.path.join(self.node_dir(node), "nginx")

    @property
    def key_path(self):
        return os.path.join(self.workdir, "peer.key")

    @property
    def www(self):
        return os.path.join(self.workdir, "www")


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


def make_body(workdir, size, seed=b"body"):
    """Write a deterministic request body file into ``workdir``; return (path, sha256)."""
    data = hashlib.shake_256(seed + b":" + str(size).encode()).digest(size) if size else b""
    path = os.path.join(workdir, f"body-{seed.decode(errors='replace')}-{size}.bin")
    with open(path, "wb") as f:
        f.write(data)
    return path, hashlib.sha256(data).hexdigest()


def keygen(binary, key_path):
    """Write a new ``key_path`` with ``<binary> keygen --out`` (mode 0600); return its path."""
    need_binary(binary)
    cp = subprocess.run([binary, "keygen", "--out", key_path], capture_output=True, timeout=30)
    if cp.returncode != 0:
        raise LabError(f"{binary} keygen failed: {cp.stderr.decode(errors='replace')}")
    return key_path


def write_daemon_config(layout, node, **overrides):
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
                 "control_socket": os.path.join(layout.node_dir(node), "control.sock")},
        "peer": {"address": NODE_IPS[peer], "key_file": layout.key_path},
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
            lines.append(f"{key.ljust(width)} = {toml_value(v)}")
    os.makedirs(layout.node_dir(node), exist_ok=True)
    path = layout.config_path(node)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


# identity.log: one line per request, fields separated by '|' (the client's identity tests).
IDENTITY_LOG_FIELDS = ("remote_addr", "x_forwarded_for", "x_real_ip", "proxy_protocol_addr",
                       "proxy_protocol_port", "request_id", "request", "status")


def nginx_conf(layout, prefix, node, lan_listen=False, workers=2, worker_connections=4096,
               rlimit_nofile=None, access_log=True, extra="", identity_log=False,
               proxy_protocol_port=None):
    """nginx.conf text for ``node``: /f/ from the content, /echo to the echo back-end.

    ``rlimit_nofile`` None leaves worker_rlimit_nofile unset; ``extra`` is appended inside the
    http block (the benchmark's reverse-proxy server block). ``identity_log`` also writes
    logs/identity.log with what the server learns of each client (IDENTITY_LOG_FIELDS; the
    request id is the Request-Id header); ``proxy_protocol_port`` adds a 127.0.0.1 listener on
    that port that expects a PROXY protocol header first (node.client_address = "proxy-v2")."""
    d = layout.nginx_dir(node)
    listens = f"    listen 127.0.0.1:{NGINX_PORT};\n"
    if lan_listen:
        listens += f"    listen {NODE_IPS[node]}:{NGINX_PORT};\n"
    if proxy_protocol_port:
        listens += f"    listen 127.0.0.1:{int(proxy_protocol_port)} proxy_protocol;\n"
    rlimit = f"worker_rlimit_nofile {int(rlimit_nofile)};\n" if rlimit_nofile else ""
    access = f"{d}/logs/access.log" if access_log else "off"
    if identity_log:
        access += (f";\n  log_format identity '$remote_addr|$http_x_forwarded_for|$http_x_real_ip|"
                   f"$proxy_protocol_addr|$proxy_protocol_port|$http_request_id|$request|$status';\n"
                   f"  access_log {d}/logs/identity.log identity")
    return f"""# generated by understudy_lab/configs.py for {prefix}-{node}
daemon off;
master_process on;
user root;
worker_processes {workers};
{rlimit}pid {d}/nginx.pid;
lock_file {d}/nginx.lock;
error_log {d}/logs/error.log info;
events {{ worker_connections {int(worker_connections)}; }}
http {{
  types {{ application/octet-stream bin; text/plain txt; }}
  default_type application/octet-stream;
  access_log {access};
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
    location /f/ {{ root {layout.www}; }}
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


def read_identity_log(layout, node):
    """The node's logs/identity.log (nginx_conf(identity_log=True)) as a list of dicts keyed by
    IDENTITY_LOG_FIELDS; nginx writes "-" for an empty variable."""
    path = os.path.join(layout.nginx_dir(node), "logs", "identity.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [dict(zip(IDENTITY_LOG_FIELDS, line.rstrip("\n").split("|"))) for line in f if line.strip()]


def write_nginx_conf(layout, node, text):
    """Create the node's nginx directories and write ``text`` as its nginx.conf; return the path."""
    d = layout.nginx_dir(node)
    for sub in ("logs", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(text)
    return conf

"""The benchmark's lab: the test lab plus nginx tuned for load, a second nginx server block as a
plain reverse proxy, and HAProxy, all in the primary's namespace."""

import dataclasses
import os

from understudy_lab.bench.scenarios import HAPROXY_PORT, NGINX_PROXY_PORT, PRIMARY_IP
from understudy_lab.configs import nginx_conf
from understudy_lab.lab import NGINX_PORT, Lab


@dataclasses.dataclass
class NginxTuning:
    """The benchmark's nginx knobs (the test lab keeps nginx's defaults)."""
    worker_connections: int = 4096
    rlimit_nofile: int | None = None  # None: worker_rlimit_nofile not set
    access_log: bool = True


def nginx_proxy_conf(node):
    if node != "primary":
        return ""
    return f"""  # benchmark: nginx as a plain reverse proxy (one user-space hop, no fault tolerance)
  upstream bench_backend {{
    server 127.0.0.1:{NGINX_PORT};
    keepalive 128;
  }}
  server {{
    listen {PRIMARY_IP}:{NGINX_PROXY_PORT};
    server_name _;
    access_log off;
    location / {{
      proxy_pass http://bench_backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffer_size 16k;
      proxy_buffers 16 64k;
      proxy_max_temp_file_size 0;
    }}
  }}
"""


HAPROXY_CFG = f"""# benchmark: HAProxy as a plain reverse proxy (one user-space hop, no fault tolerance)
global
  maxconn {{maxconn}}
  # one thread: with two on this 2-CPU lab, new-connection latency went bimodal (mean 2.4 ms, p50 0.3)
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend bench
  bind {PRIMARY_IP}:{HAPROXY_PORT}
  default_backend nginx
backend nginx
  server local 127.0.0.1:{NGINX_PORT}
"""


class BenchLab(Lab):
    """``Lab`` whose nginx follows ``tuning`` and also serves the reverse-proxy block."""

    def __init__(self, tuning=None, **kw):
        super().__init__(**kw)
        self.tuning = tuning or NginxTuning()

    def nginx_conf(self, node):
        t = self.tuning
        return nginx_conf(self.files, self.prefix, node, lan_listen=self.lan_listen, workers=self.nginx_workers,
                          worker_connections=t.worker_connections, rlimit_nofile=t.rlimit_nofile,
                          access_log=t.access_log, extra=nginx_proxy_conf(node))

    def start_haproxy(self, nofile):
        """Start HAProxy in the primary's namespace (process kind "haproxy"); return the Popen."""
        cfg = os.path.join(self.node_dir("primary"), "haproxy.cfg")
        # haproxy refuses to start if 2 x maxconn does not fit in its descriptor limit
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG.format(maxconn=max(256, (nofile - 200) // 2)))
        return self.spawn("primary", "haproxy", ["haproxy", "-db", "-f", cfg], "haproxy.log")

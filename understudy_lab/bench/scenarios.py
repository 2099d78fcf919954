"""What the benchmark measures: its modes (where the client connects), the file sizes and the
full and smoke profiles. Shared by the runner and the report."""

from understudy_lab.lab import ADVERTISED_IP, NGINX_PORT, NODE_IPS

PRIMARY_IP = NODE_IPS["primary"]
NGINX_PROXY_PORT = 8081
HAPROXY_PORT = 8082

MODES = {
    "direct": (PRIMARY_IP, NGINX_PORT),
    "nginx-proxy": (PRIMARY_IP, NGINX_PROXY_PORT),
    "haproxy": (PRIMARY_IP, HAPROXY_PORT),
    "null": (ADVERTISED_IP, 80),
    "simplex": (ADVERTISED_IP, 80),
    "duplex": (ADVERTISED_IP, 80),
}
MODE_ORDER = ["direct", "nginx-proxy", "haproxy", "null", "simplex", "duplex"]
DAEMON_MODES = ("null", "simplex", "duplex")

SIZES = {"1k": "/f/1k.bin", "5k": "/f/5k.bin", "10k": "/f/10k.bin", "100k": "/f/100k.bin",
         "1m": "/f/1m.bin"}
SIZE_ORDER = ["1k", "5k", "10k", "100k", "1m"]
SIZE_LABEL = {"1k": "1 KiB", "5k": "5 KiB", "10k": "10 KiB", "100k": "100 KiB", "1m": "1 MiB"}

PROFILES = {
    "full": {
        "lat_n": 300, "lat_sizes": SIZE_ORDER, "wrk_sizes": SIZE_ORDER, "wrk_seconds": 5,
        "concurrency": [1, 16, 64], "failover_runs": 20, "failover_seconds": 3.0,
        "bulk_runs": 7,
        "scale_n": 10000, "scale_busy": "10k", "scale_rate": 1000,
        "scale_steps": [1000, 2000, 5000, 7500],
    },
    "smoke": {
        "lat_n": 20, "lat_sizes": ["1k", "1m"], "wrk_sizes": ["1k"], "wrk_seconds": 1,
        "concurrency": [1, 16], "failover_runs": 2, "failover_seconds": 2.0,
        "bulk_runs": 1,
        # above limits.max_connections_per_source's default (512), which the bench lab lifts
        "scale_n": 600, "scale_busy": "10k", "scale_rate": 1000,
        "scale_steps": [100],
    },
}

# the failover and handover scenarios' load: (kind, size) per client slot, a request every 20 ms
FAILOVER_MIX = [("keep", "1k")] * 4 + [("keep", "10k"), ("keep", "100k"), ("keep", "1m"),
                                       ("new", "1k"), ("new", "10k")]
# failover-bulk (issue 11's "verifying load"): 16 keep-alive connections, 100 KiB back to back
BULK_MIX = [("keep", "100k")] * 16

HEARTBEAT = {"interval_ms": 20, "timeout_ms": 100}

# bench/run --profile: the point run under `perf record` (issue 11's reference point)
PROFILE_POINT = {"mode": "duplex", "size": "100k", "conc": 16, "seconds": 5}

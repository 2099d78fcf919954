"""Understudy benchmark: brings up one lab, measures every mode in it, writes the results.

Entry point: bench/run, i.e. python3 -m understudy_lab.bench (see docs/PERFORMANCE.md). Modes and how they map onto the lab:

  direct       client -> the primary's nginx on its LAN address 198.18.0.11:8080 (no proxy)
  nginx-proxy  client -> 198.18.0.11:8081, a second nginx server block in the primary's
               namespace proxying to 127.0.0.1:8080 with upstream keep-alive
  haproxy      client -> 198.18.0.11:8082, HAProxy in the primary's namespace, same upstream
  null         client -> 198.18.0.100:80, ONE Understudy node (the primary) started alone: it
               goes simplex after node.startup_wait_ms; packet and message layers relay, nothing
               is replicated (the paper's "null proxies")
  duplex       client -> 198.18.0.100:80, both nodes (client -> backup -> primary), replicated
  simplex      client -> 198.18.0.100:80, both nodes started, then the backup stopped with
               SIGTERM: the primary serves alone after a real failover

Besides the modes: failover (the primary crashes under a keep-alive load), failover-bulk (it
crashes under 16 keep-alive connections fetching 100 KiB back to back), handover (the same
load, the primary -- or with --handover-node backup the backup -- stopped with SIGTERM: a planned
handover), scale (how many duplex connections the nodes hold).

CPU: every latency and throughput point also records the CPU time (utime + stime) that each
node's daemon, nginx and (primary) HAProxy spent in it, per request (results.json "cpu", cpu.csv).
With --profile, one extra duplex point (100 KiB, wrk -c16) runs under `perf record` on both daemons
and writes profile/<node>.folded (flame graph input) and profile/<node>-summary.txt.

All modes use the same client namespace, bridge and nginx (the primary's).
"""
import argparse
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

from understudy_lab import lab as ul
from understudy_lab.bench import cpuprof, report
from understudy_lab.bench.benchlab import BenchLab, NginxTuning
from understudy_lab.bench.scenarios import (BULK_MIX, DAEMON_MODES, FAILOVER_MIX, HAPROXY_PORT, HEARTBEAT,
                                            MODE_ORDER, MODES, NGINX_PROXY_PORT, PRIMARY_IP, PROFILE_POINT,
                                            PROFILES, SIZES)
from understudy_lab.topology import ns_pids

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(ul.REPO_ROOT, "bench", "results")
REPO = ul.REPO_ROOT

def log(msg):
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def summarize(xs):
    if not xs:
        return {"n": 0, "mean": None, "p50": None, "p99": None, "min": None, "max": None}
    s = sorted(xs)

    def pct(p):  # nearest-rank
        k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
        return s[k]
    return {"n": len(s), "mean": statistics.fmean(s), "p50": statistics.median(s), "p99": pct(99),
            "min": s[0], "max": s[-1]}


class BenchError(RuntimeError):
    pass


class Bench:
    def __init__(self, profile, out, binary, keep_lab=False, only=None, handover_node="primary",
                 perf=None, offloads=True):
        self.only = only
        self.offloads = offloads  # the veths' offloads (LabOptions.offloads): every mode alike
        self.perf = perf  # None, or the perf call-graph mode ("fp", "dwarf") of the --profile point
        self.handover_node = handover_node
        self.p = PROFILES[profile]
        self.profile = profile
        self.out = out
        self.binary = binary
        self.keep_lab = keep_lab
        self.errors = []      # every failure: the run exits non-zero if any
        self.res = {"latency": [], "throughput": [], "timing": [], "failover": {}, "handover": {}, "scale": {},
                    "cpu": []}
        self.lab = None
        self.timing_ok = None  # does this daemon report "timing"? (None: not asked yet)
        self.mode_failovers = {}  # node -> failovers when the current mode was entered

    # ------------------------------------------------------------------ helpers
    def error(self, what):
        log("ERROR: " + what)
        self.errors.append(what)

    def guard(self, what, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - one broken point must not hide the others
            self.error(f"{what}: {type(e).__name__}: {e}")

    @staticmethod
    def client(name):
        """argv of one of the benchmark's client programs (they run in the client namespace)."""
        return ul.python_module(f"understudy_lab.bench.{name}")

    def status(self, node, reset=False):
        args = [self.lab.binary, "status", "--config", self.lab.config_path(node), "--json"]
        if reset and self.timing_ok is not False:
            cp = self.lab.run_in(node, args + ["--reset-timing"], timeout=10)
            if cp.returncode == 0:
                return json.loads(cp.stdout.decode())
            self.timing_ok = False  # an older daemon without --reset-timing
            log("note: this daemon has no `status --reset-timing`; no per-component breakdown")
        cp = self.lab.run_in(node, args, timeout=10)
        if cp.returncode != 0:
            return None
        return json.loads(cp.stdout.decode())

    def daemon_rss_kb(self, node):
        pids = self.lab.daemon_pids(node)
        if not pids:
            return None
        with open(f"/proc/{pids[0]}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    @staticmethod
    def tcp_mem_pages():
        # /proc/net/sockstat "TCP: ... mem N" is the protocol-wide (all namespaces) page count
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    m = re.search(r"\bmem (\d+)", line)
                    return int(m.group(1)) if m else None
        return None

    # ------------------------------------------------------------------ CPU
    def cpu_begin(self):
        """Start a CPU window over every node's daemon, nginx and HAProxy processes."""
        groups = {}
        for node in ("primary", "backup"):
            in_ns = ns_pids(self.lab.ns(node))
            for role, pids in (("understudy", self.lab.daemon_pids(node)),
                               ("nginx", cpuprof.ns_comm_pids(in_ns, "nginx")),
                               ("haproxy", cpuprof.ns_comm_pids(in_ns, "haproxy"))):
                if pids:
                    groups[(node, role)] = pids
        return groups, cpuprof.snapshot(groups), time.monotonic()

    @staticmethod
    def cpu_end(window):
        """End a CPU window: ({(node, role): (user s, sys s)}, wall seconds, process counts)."""
        groups, before, t0 = window
        spent = cpuprof.delta(before, cpuprof.snapshot(groups))
        return spent, time.monotonic() - t0, {k: len(v) for k, v in groups.items()}

    @staticmethod
    def cpu_rows(measured, point, requests):
        """The results' CPU rows of a measured window; ``point`` names it."""
        spent, secs, nproc = measured
        return [{**point, "node": node, "role": role, "processes": nproc[(node, role)],
                 "requests": requests, "seconds": secs, "user_s": u, "sys_s": s,
                 "us_per_req": (u + s) * 1e6 / requests if requests else None,
                 "busy_pct": 100.0 * (u + s) / secs if secs > 0 else None}
                for (node, role), (u, s) in sorted(spent.items())]

    # ------------------------------------------------------------------ lab
    def up(self):
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.lab = BenchLab(NginxTuning(worker_connections=nofile, rlimit_nofile=nofile, access_log=False),
                            binary=self.binary, lan_listen=True, keep_workdir=self.keep_lab,
                            offloads=self.offloads)
        self.lab.up()
        log(f"lab {self.lab.prefix} up (workdir {self.lab.workdir})")
        self.lab.keygen()
        hap = self.lab.start_haproxy(nofile)
        for port, what in ((ul.NGINX_PORT, "nginx (direct)"), (NGINX_PROXY_PORT, "nginx reverse proxy"),
                           (HAPROXY_PORT, "haproxy")):
            def probe():
                if hap.poll() is not None:
                    raise BenchError(f"haproxy exited ({hap.returncode}): {self.lab.log_tail('primary', 'haproxy')}")
                return self.lab.wait_http("client", PRIMARY_IP, port, "/f/0.bin", timeout=1, what=what)
            ul.wait_for(probe, 15, what)

    def write_configs(self, startup_wait_ms=None):
        for node in ("primary", "backup"):
            # The client namespace's one address stands for every client (the scale test opens
            # 10,000 connections from it): no per-source cap.
            ov = {"heartbeat": dict(HEARTBEAT), "limits": {"max_connections_per_source": 0}}
            if startup_wait_ms is not None and node == "primary":
                ov["node_startup_wait_ms"] = startup_wait_ms
            self.lab.write_config(node, **ov)

    def start_duplex(self):
        self.write_configs()
        self.lab.start_node("primary")
        self.lab.start_node("backup")
        self.lab.wait_status("primary", timeout=15, mode="duplex", channel_up=True)
        self.lab.wait_status("backup", timeout=15, mode="duplex", front=True)

    def stop_all(self):
        for node in ("backup", "primary"):
            self.lab.stop_node(node)

    def enter_mode(self, mode):
        if mode == "null":
            self.write_configs(startup_wait_ms=200)
            self.lab.start_node("primary")
            self.lab.wait_status("primary", timeout=15, mode="simplex", front=True)
        elif mode == "duplex":
            self.start_duplex()
        elif mode == "simplex":
            self.start_duplex()
            self.lab.stop_node("backup")
            self.lab.wait_status("primary", timeout=15, mode="simplex", front=True, failovers=1)
        # let the client's ARP entry for the advertised address follow the front
        if mode in DAEMON_MODES:
            host, port = MODES[mode]
            self.lab.wait_http("client", host, port, "/f/0.bin", what=f"{mode}: the service")
            nodes = ("primary", "backup") if mode == "duplex" else ("primary",)
            self.mode_failovers = {n: (self.status(n) or {}).get("failovers") for n in nodes}

    # ------------------------------------------------------------------ latency
    def latency_point(self, mode, size, conn):
        host, port = MODES[mode]
        path = SIZES[size]
        nbytes, sha = self.lab.manifest[path]
        daemon = mode in DAEMON_MODES
        nodes = ["primary", "backup"] if mode == "duplex" else ["primary"]
        p = subprocess.Popen(["ip", "netns", "exec", self.lab.ns("client")] + self.client("lat_client") +
                             [host, str(port), path, "--size", str(nbytes), "--sha256", sha,
                              "--n", str(self.p["lat_n"]), "--conn", conn, "--sync"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        before = {}
        cpu = None
        try:
            warm = p.stdout.readline()  # after the warm-up requests
            if warm.strip() == "WARM":
                # zero the daemon's histograms: they then count exactly the measured requests
                before = {n: self.status(n, reset=True) for n in nodes} if daemon else {}
                cpu = self.cpu_begin()
            out, err = p.communicate("go\n" if warm.strip() == "WARM" else None, timeout=600)
            if cpu is not None:
                cpu = self.cpu_end(cpu)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        try:
            r = json.loads((warm + out).strip().splitlines()[-1])
        except (ValueError, IndexError):
            r = {"ok": False, "errors": [f"no JSON from lat_client (rc {p.returncode}): {err[-500:]}"],
                 "lat_ms": [], "ttfb_ms": []}
        if not r["ok"]:
            self.error(f"latency {mode} {size} {conn}: {r['errors'][:3]}")
        s = summarize(r["lat_ms"])
        row = {"mode": mode, "size": size, "bytes": nbytes, "conn": conn, **s,
               "ttfb_mean": summarize(r["ttfb_ms"])["mean"], "errors": len(r["errors"]),
               "samples_ms": r["lat_ms"]}
        self.res["latency"].append(row)
        if cpu is not None:
            self.res["cpu"] += self.cpu_rows(cpu, {"kind": "latency", "mode": mode, "size": size, "conn": conn,
                                                   "load": conn}, len(r["lat_ms"]))
        if daemon:
            for n in nodes:
                st = self.status(n)
                if st is None:
                    self.error(f"status of {n} failed after latency {mode} {size} {conn}")
                    continue
                t = st.get("timing")
                if t is not None and self.timing_ok is None:
                    self.timing_ok = True
                b = before.get(n) or {}
                d_pkts = {k: st["packet"][k] - b.get("packet", {}).get(k, 0) for k in
                          ("client_packets", "relayed", "to_kernel", "to_client")}
                d_req = st["message"]["requests"] - b.get("message", {}).get("requests", 0)
                self.res["timing"].append({"mode": mode, "size": size, "conn": conn, "node": n,
                                           "timing": t, "packets": d_pkts, "requests": d_req})
        log(f"latency {mode:11s} {size:>4s} {conn:4s}: mean {fmt(s['mean'])} ms, p50 {fmt(s['p50'])}, "
            f"p99 {fmt(s['p99'])}" + (f", {len(r['errors'])} ERRORS" if r["errors"] else ""))

    # ------------------------------------------------------------------ throughput
    def wrk_point(self, mode, size, conc, secs=None, kind="throughput"):
        """One wrk run; recorded in the results' throughput and CPU rows, or with ``kind`` other than
        "throughput" only returned: (throughput row, CPU rows), or None if wrk failed."""
        host, port = MODES[mode]
        path = SIZES[size]
        nbytes, _ = self.lab.manifest[path]
        threads = min(2, conc)
        secs = secs or self.p["wrk_seconds"]
        cpu = self.cpu_begin()
        cp = self.lab.run_client(["wrk", f"-t{threads}", f"-c{conc}", f"-d{secs}s", "--latency",
                                  "--timeout", "30s", "-s", os.path.join(BENCH_DIR, "wrk_report.lua"),
                                  f"http://{host}:{port}{path}"], timeout=secs + 60)
        cpu = self.cpu_end(cpu)
        text = cp.stdout.decode(errors="replace")
        m = re.search(r"^BENCHJSON (.*)$", text, re.M)
        if cp.returncode != 0 or not m:
            self.error(f"wrk {mode} {size} c{conc} failed (rc {cp.returncode}): "
                       f"{(text + cp.stderr.decode(errors='replace'))[-400:]}")
            return None
        w = json.loads(m.group(1))
        cpu = self.cpu_rows(cpu, {"kind": kind, "mode": mode, "size": size, "conc": conc,
                                  "load": f"c{conc}"}, w["requests"])
        errs = sum(w["errors"].values())
        reqs = w["requests"]
        # every reply is one 200 with the file: no non-2xx (errors.status), and the bytes read are
        # at least the bodies of the completed requests and at most those plus headers and the
        # partial replies cut at the end of the run
        lo = reqs * nbytes
        hi = (reqs + conc) * (nbytes + 1024)
        if errs or reqs == 0 or not (lo <= w["bytes"] <= hi):
            self.error(f"wrk {mode} {size} c{conc}: {reqs} requests, {w['bytes']} bytes "
                       f"(want {lo}..{hi}), errors {w['errors']}")
        rps = reqs / (w["duration_us"] / 1e6)
        row = {"mode": mode, "size": size, "bytes": nbytes, "conc": conc,
               "threads": threads, "seconds": secs, "requests": reqs,
               "rps": rps, "mib_s": w["bytes"] / (w["duration_us"] / 1e6) / 2**20,
               "lat_us": w["lat_us"], "errors": w["errors"]}
        if kind == "throughput":
            self.res["throughput"].append(row)
            self.res["cpu"] += cpu
        daemon_us = ", ".join(f"{c['node']} {c['us_per_req']:.0f}" for c in cpu
                              if c["role"] == "understudy" and c["us_per_req"] is not None)
        log(f"wrk     {mode:11s} {size:>4s} c{conc:<3d}: {rps:9.0f} req/s, p99 {w['lat_us']['p99'] / 1000:.2f} ms"
            + (f", understudy CPU µs/request: {daemon_us}" if daemon_us else "")
            + (f", errors {w['errors']}" if errs else ""))
        return row, cpu

    def profile_point(self):
        """The --profile point: wrk on duplex under `perf record` on both daemons. A missing or
        refused perf is noted and skipped, not an error of the run."""
        mode, size, conc, secs = (PROFILE_POINT[k] for k in ("mode", "size", "conc", "seconds"))
        prof = {"mode": mode, "size": size, "conc": conc, "seconds": secs, "callgraph": self.perf,
                "nodes": {}}
        self.res["profile"] = prof
        if not shutil.which("perf"):
            prof["skipped"] = "perf is not installed (Debian: linux-perf)"
            log(f"profile: skipped: {prof['skipped']}")
            return
        outdir = os.path.join(self.out, "profile")
        os.makedirs(outdir, exist_ok=True)
        data = {n: os.path.join(self.lab.workdir, f"{n}.perf.data") for n in ("primary", "backup")}
        recs = {}
        try:
            for n in data:
                recs[n] = cpuprof.PerfRecord(self.lab.daemon_pids(n), data[n], callgraph=self.perf)
            for rec in recs.values():
                rec.start()  # returns once perf acknowledged: the samples start here
            got = self.wrk_point(mode, size, conc, secs=secs, kind="profile")
            for rec in recs.values():
                rec.stop()
        except RuntimeError as e:
            prof["skipped"] = str(e)
            log(f"profile: skipped: perf failed: {e}")
            return
        finally:
            for rec in recs.values():
                rec.close()
        if got:
            prof["rps"] = got[0]["rps"]
            prof["cpu"] = got[1]
        what = f" ({mode}, {size}, wrk -c{conc}, {secs} s, perf --call-graph {self.perf})"
        for n in data:
            s = cpuprof.write_profile(data[n], outdir, n, what)
            os.unlink(data[n])
            prof["nodes"][n] = s
            log(f"profile {n}: {s['samples']} samples; self time " +
                ", ".join(f"{c} {v:.1f}%" for c, v in s["split_pct"].items()))

    def run_mode(self, mode):
        log(f"--- mode {mode}")
        try:
            self.enter_mode(mode)
        except Exception as e:  # noqa: BLE001 - report, go on with the other modes
            self.error(f"mode {mode}: could not start: {e}")
            return
        try:
            points = [(f"latency {mode} {size} {conn}", self.latency_point, (mode, size, conn), "latency")
                      for size in self.p["lat_sizes"] for conn in ("new", "keep")]
            points += [(f"wrk {mode} {size} c{conc}", self.wrk_point, (mode, size, conc), "throughput")
                       for size in self.p["wrk_sizes"] for conc in self.p["concurrency"]]
            if self.perf and mode == PROFILE_POINT["mode"]:
                points.append(("profile", self.profile_point, (), "profile"))
            for what, fn, args, kind in points:
                self.guard(what, fn, *args)
                if mode in DAEMON_MODES and not self.mode_intact(mode, what):
                    if kind in ("latency", "throughput") and self.res[kind] and self.res[kind][-1]["mode"] == mode:
                        self.res[kind][-1]["mode_lost"] = True
                    # measure the remaining points in the mode they are meant for
                    self.stop_all()
                    self.enter_mode(mode)
        finally:
            if mode in DAEMON_MODES:
                self.stop_all()

    def mode_intact(self, mode, what):
        """Are the daemons still in ``mode``? (A node may fail over on its own, e.g. heartbeats
        starved under load: that is a result, and the point is flagged.)"""
        want = "duplex" if mode == "duplex" else "simplex"
        bad = []
        for n in (("primary", "backup") if mode == "duplex" else ("primary",)):
            st = self.status(n)
            if not st or st.get("mode") != want or st.get("failovers") != self.mode_failovers.get(n):
                bad.append(f"{n}: {st and {k: st.get(k) for k in ('mode', 'front', 'peer', 'failovers')}}")
        if bad:
            self.error(f"mode {mode} was lost during '{what}' ({'; '.join(bad)}); restarted it for the next point")
            self.res.setdefault("mode_lost", []).append({"mode": mode, "point": what, "status": bad})
        return not bad

    def save_logs(self):
        d = os.path.join(self.out, "logs")
        os.makedirs(d, exist_ok=True)
        for node in ("primary", "backup"):
            for src, name in ((os.path.join(self.lab.node_dir(node), "understudy.log"), f"{node}-understudy.log"),
                              (os.path.join(self.lab.nginx_dir(node), "logs", "error.log"), f"{node}-nginx-error.log"),
                              (os.path.join(self.lab.node_dir(node), "haproxy.log"), f"{node}-haproxy.log")):
                if os.path.isfile(src):
                    shutil.copyfile(src, os.path.join(d, name))

    # ------------------------------------------------------------------ failover, handover
    def failover(self):
        """The primary crashes like a host under a keep-alive load (unplanned)."""
        self.res["failover"] = self.stop_under_load("failover", "primary", planned=False)

    def handover(self):
        """The same load and measurement, but the node is stopped with SIGTERM: a planned
        handover (issue 9, item 4), which must stall the clients well under a failover."""
        self.res["handover"] = self.stop_under_load("handover", self.handover_node, planned=True)

    def failover_bulk(self):
        """The primary crashes under issue 11's verifying load: 16 keep-alive connections fetching
        100 KiB back to back, every reply checked; the measure is the longest request."""
        self.res["failover_bulk"] = self.stop_under_load(
            "failover-bulk", "primary", planned=False, mix=BULK_MIX, interval_ms=0,
            runs=self.p["bulk_runs"])

    def stop_under_load(self, name, victim, planned, mix=None, interval_ms=20, runs=None):
        """Stop ``victim`` (crash, or SIGTERM if ``planned``) under the load client (``mix``, one
        request per slot every ``interval_ms``), ``runs`` (default failover_runs) times; return the
        runs and their p50/p99 summaries."""
        survivor = "backup" if victim == "primary" else "primary"
        what = "the SIGTERM" if planned else "the crash"
        mix = mix or FAILOVER_MIX
        n_runs = self.p["failover_runs"] if runs is None else runs
        runs = []
        host, port = MODES["duplex"]
        slots = []
        for kind, size in mix:
            nbytes, sha = self.lab.manifest[SIZES[size]]
            slots += ["--slot", f"{kind}:{SIZES[size]}:{nbytes}:{sha}"]
        for i in range(n_runs):
            run = {"run": i}
            try:
                # the daemons' logs are appended to: this run's lines start here
                log_at = {n: self.log_size(n) for n in ("primary", "backup")}
                self.start_duplex()
                ready = os.path.join(self.lab.workdir, f"{name}-ready-{i}")
                p = subprocess.Popen(["ip", "netns", "exec", self.lab.ns("client")] + self.client("load_client") +
                                     [host, str(port),
                                      "--duration", str(self.p["failover_seconds"]),
                                      "--interval-ms", str(interval_ms), "--ready", ready] + slots,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    ul.wait_for(lambda: os.path.exists(ready) or p.poll() is not None, 20,
                                "the load client's first replies")
                    if p.poll() is not None:
                        raise BenchError(f"load client exited early: {p.stderr.read().decode()[-400:]}")
                    time.sleep(0.5)  # steady load before the stop (a deliberate pause, not a wait)
                    if planned:
                        daemon = self.lab.procs[(victim, "daemon")]
                        t0 = time.monotonic()
                        daemon.send_signal(signal.SIGTERM)
                        t1 = time.monotonic()
                    else:
                        ns = self.lab.ns(victim)
                        t0 = time.monotonic()
                        ul.sh(["ip", "-n", ns, "link", "set", "eth0", "down"])
                        t1 = time.monotonic()
                        self.lab.crash(victim)  # eth0 is already down; SIGKILL the daemon
                    self.lab.wait_status(survivor, timeout=10, mode="simplex", front=True, failovers=1)
                    t_status = time.monotonic()
                    if planned:
                        run["exit_code"] = daemon.wait(timeout=15)
                        if run["exit_code"] != 0:
                            self.error(f"{name} run {i}: the {victim} exited with {run['exit_code']} "
                                       f"after SIGTERM")
                    out, err = p.communicate(timeout=self.p["failover_seconds"] + 30)
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.communicate()
                if planned:
                    # did the survivor take over on the Leaving message, or on the heartbeat timeout?
                    run["handed_over"] = "handed over" in self.log_since(survivor, log_at[survivor])
                r = json.loads(out.decode())
                # A slot resumed at its first read after the link went down / the signal (+2 ms)
                # that ends a silence of >= 50 ms (its normal gaps are <= 20 ms): so a read of bytes
                # that arrived before the stop, but were read late (busy CPUs), does not count.
                # A slot that was never silent that long resumed at its first read after it. The
                # silence must have begun before the survivor reported simplex: a later one (a
                # retransmission while it serves alone) is not a resumption from the stop.
                # at_stop: per slot, the longest silence between two reads that overlaps the stop
                # (signal or link down .. survivor in simplex); the longest stall can also come
                # from later in the run.
                first_after = []
                at_stop = []
                for sl in r["slots"]:
                    reads = sl["reads"]
                    cand = [reads[k] for k in range(1, len(reads))
                            if reads[k] > t1 + 0.002 and reads[k] - reads[k - 1] >= 0.05
                            and reads[k - 1] <= t_status]
                    if not cand:
                        cand = [t for t in reads if t > t1 + 0.002]
                    if cand:
                        first_after.append(cand[0])
                    at_stop.append(max((reads[k] - reads[k - 1] for k in range(1, len(reads))
                                        if reads[k - 1] <= t_status and reads[k] >= t0), default=0.0))
                failed = sum(sl["failed"] for sl in r["slots"])
                done = sum(sl["done"] for sl in r["slots"])
                run.update({
                    "crash_cmd_ms": (t1 - t0) * 1000,
                    "status_simplex_ms": (t_status - t0) * 1000,
                    "first_resumed_ms": (min(first_after) - t0) * 1000 if first_after else None,
                    "all_resumed_ms": (max(first_after) - t0) * 1000
                    if len(first_after) == len(r["slots"]) else None,
                    "max_stall_ms": max(sl["max_gap_ms"] for sl in r["slots"]),
                    "stall_at_stop_ms": max(at_stop) * 1000,
                    "max_stall_keep_ms": max(sl["max_gap_ms"] for sl in r["slots"] if sl["kind"] == "keep"),
                    "max_stall_new_ms": max((sl["max_gap_ms"] for sl in r["slots"] if sl["kind"] == "new"),
                                            default=None),
                    # the longest request, from its send (or connect) to its last byte, verified
                    "max_request_ms": max((x for sl in r["slots"] for x in sl["lat_ms"]), default=None),
                    "requests": done, "failed": failed,
                    "errors": [e for sl in r["slots"] for e in sl["errors"]][:5],
                    "slots": [{"kind": sl["kind"], "path": sl["path"], "done": sl["done"],
                               "failed": sl["failed"], "max_gap_ms": sl["max_gap_ms"],
                               "reads_rel_ms": [round((t - t0) * 1000, 3) for t in sl["reads"]
                                                if -300 <= (t - t0) * 1000 <= 700]}
                              for sl in r["slots"]],
                })
                if failed:
                    self.error(f"{name} run {i}: {failed} of {done + failed} requests failed: {run['errors']}")
                if run["first_resumed_ms"] is None:
                    self.error(f"{name} run {i}: no byte reached any client after {what}")
                how = ""
                if planned:
                    how = ", handed over" if run["handed_over"] else ", NOT handed over (heartbeat timeout)"
                log(f"{name} run {i}: first resumed byte {fmt(run['first_resumed_ms'])} ms after {what}, "
                    f"all resumed {fmt(run['all_resumed_ms'])} ms, longest stall {run['max_stall_ms']:.1f} ms "
                    f"(keep-alive {run['max_stall_keep_ms']:.1f}; across the stop {run['stall_at_stop_ms']:.1f}), "
                    f"longest request {fmt(run['max_request_ms'], 1)} ms, {done} requests, {failed} failed{how}")
            except Exception as e:  # noqa: BLE001
                self.error(f"{name} run {i}: {type(e).__name__}: {e}")
                run["exception"] = str(e)
            finally:
                runs.append(run)
                try:
                    self.stop_all()
                finally:
                    if not planned:
                        self.lab.link_up(victim)
        ok = [r for r in runs if "exception" not in r]
        res = {
            "runs": runs, "heartbeat": HEARTBEAT, "interval_ms": interval_ms,
            "mix": [f"{k}:{s}" for k, s in mix], "victim": victim, "planned": planned,
            "first_resumed_ms": summarize([r["first_resumed_ms"] for r in ok if r["first_resumed_ms"] is not None]),
            "all_resumed_ms": summarize([r["all_resumed_ms"] for r in ok if r["all_resumed_ms"] is not None]),
            "max_stall_ms": summarize([r["max_stall_ms"] for r in ok]),
            "stall_at_stop_ms": summarize([r["stall_at_stop_ms"] for r in ok]),
            "max_stall_keep_ms": summarize([r["max_stall_keep_ms"] for r in ok]),
            "max_stall_new_ms": summarize([r["max_stall_new_ms"] for r in ok if r["max_stall_new_ms"] is not None]),
            "max_request_ms": summarize([r["max_request_ms"] for r in ok if r["max_request_ms"] is not None]),
            "requests": sum(r.get("requests", 0) for r in ok),
            "failed": sum(r.get("failed", 0) for r in ok),
        }
        if planned:
            res["handed_over"] = sum(1 for r in ok if r.get("handed_over"))
        st = res["max_stall_ms"]
        if st["n"]:
            sa = res["stall_at_stop_ms"]
            log(f"{name}: longest client stall p50 {fmt(st['p50'], 1)} ms, p99 {fmt(st['p99'], 1)} ms "
                f"over {st['n']} runs (across the stop: p50 {fmt(sa['p50'], 1)}, p99 {fmt(sa['p99'], 1)}); "
                f"longest request max {fmt(res['max_request_ms']['max'], 1)} ms; "
                f"{res['failed']} of {res['failed'] + res['requests']} requests failed"
                + (f"; handed over in {res['handed_over']} of {len(ok)} runs" if planned else ""))
        return res

    def log_size(self, node):
        try:
            return os.path.getsize(os.path.join(self.lab.node_dir(node), "understudy.log"))
        except OSError:
            return 0

    def log_since(self, node, offset):
        try:
            with open(os.path.join(self.lab.node_dir(node), "understudy.log"), "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ scale
    def scale(self):
        n = self.p["scale_n"]
        busy = self.p["scale_busy"]
        path = SIZES[busy]
        nbytes, sha = self.lab.manifest[path]
        host, port = MODES["duplex"]
        steps = [x for x in self.p["scale_steps"] if x < n]
        sc = {"target": n, "busy_reply": busy, "rate": self.p["scale_rate"], "steps": []}
        self.res["scale"] = sc
        self.start_duplex()
        p = None
        try:
            sc["baseline"] = self.mem_snapshot()
            p = subprocess.Popen(["ip", "netns", "exec", self.lab.ns("client")] + self.client("hold_client") +
                                 [host, str(port), "--n", str(n),
                                  "--path", path, "--size", str(nbytes), "--sha256", sha,
                                  "--rate", str(self.p["scale_rate"]), "--steps", ",".join(map(str, steps))],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, bufsize=1)

            def phase(cmd=None, timeout=300):
                if cmd:
                    p.stdin.write(cmd + "\n")
                    p.stdin.flush()
                if cmd == "close":
                    return None
                if not select.select([p.stdout], [], [], timeout)[0]:
                    raise BenchError(f"hold client: no answer in {timeout}s")
                line = p.stdout.readline()  # the client answers every phase with one line
                if not line:
                    raise BenchError(f"hold client died: {p.stderr.read()[-500:]}")
                return json.loads(line)

            def check(held):
                """Both nodes count ``held`` connections and are still in duplex? -> step record"""
                def counted():
                    sts = {nd: self.status(nd) for nd in ("primary", "backup")}
                    return sts if all(s and s["connections"] >= held for s in sts.values()) else None
                try:
                    sts = ul.wait_for(counted, 30, f"both nodes to count {held} connections")
                except TimeoutError as e:
                    self.error(f"scale: {e}")
                    sts = {nd: self.status(nd) for nd in ("primary", "backup")}
                rec = {"held_client": held,
                       "held_nodes": {nd: (s or {}).get("connections") for nd, s in sts.items()},
                       "modes": {nd: (s or {}).get("mode") for nd, s in sts.items()},
                       "mem": self.mem_snapshot()}
                rec["held"] = min([held] + [v or 0 for v in rec["held_nodes"].values()])
                rec["duplex"] = all(m == "duplex" for m in rec["modes"].values())
                sc["steps"].append(rec)
                log(f"scale: {rec['held']} connections held, modes {rec['modes']}, "
                    f"RSS {rec['mem']['rss_kb']} KiB")
                return rec

            msg = phase()
            while msg["phase"] == "step":
                rec = check(msg["held"])
                msg = phase("more" if rec["duplex"] else "stop")
            idle = msg
            sc["idle_client"] = idle
            held = idle["held"]
            log(f"scale: client holds {held} of {n} connections ({idle['failed']} failed) "
                f"after {idle['open_s']} s")
            if idle["failed"]:
                self.error(f"scale: {idle['failed']} of {n} connections failed: {idle['errors']}")
            rec = check(held) if not sc["steps"] or sc["steps"][-1]["held_client"] != held else sc["steps"][-1]
            sc["held_client"] = rec["held_client"]
            sc["held_nodes"] = rec["held_nodes"]
            sc["held"] = rec["held"]
            sc["modes_after_open"] = rec["modes"]
            sc["held_duplex"] = max([x["held"] for x in sc["steps"] if x["duplex"]], default=0)
            sc["idle"] = rec["mem"]
            if not rec["duplex"]:
                self.error(f"scale: the nodes left duplex with {rec['held']} connections open "
                           f"({rec['modes']}); the most held in duplex: {sc['held_duplex']}")
            # the service still answers while they are held
            nb1, sha1 = self.lab.manifest["/f/1k.bin"]
            cp = self.lab.run_client(self.client("lat_client") + [host, str(port), "/f/1k.bin",
                                      "--size", str(nb1), "--sha256", sha1, "--n", "5", "--warmup", "0"],
                                     timeout=60)
            try:
                live = json.loads(cp.stdout.decode())
            except ValueError:
                live = {"ok": False, "errors": [cp.stderr.decode(errors="replace")[-300:]]}
            sc["live_check"] = {"ok": live["ok"], "mean_ms": summarize(live.get("lat_ms", []))["mean"]}
            if not live["ok"]:
                self.error(f"scale: a new request failed while {held} connections were held: {live['errors']}")
            if rec["duplex"]:
                sc["busy_client"] = phase("busy")
                # wait until the replies have been pulled through both daemons (RSS stops growing)
                self.wait_rss_settled()
                sc["busy"] = self.mem_snapshot()
                sts = {nd: self.status(nd) for nd in ("primary", "backup")}
                sc["modes_after_busy"] = {nd: (x or {}).get("mode") for nd, x in sts.items()}
                if any(m != "duplex" for m in sc["modes_after_busy"].values()):
                    self.error(f"scale: the nodes left duplex when {held} requests arrived at once "
                               f"({sc['modes_after_busy']})")
                done = phase("read")
                sc["read_client"] = done
                if done["bad"]:
                    self.error(f"scale: {done['bad']} of {held} busy replies were wrong: {done['errors']}")
            else:
                sc["busy_skipped"] = "the nodes were not in duplex any more"
            phase("close")
            p.wait(timeout=60)
            base = sc["baseline"]
            for state in ("idle", "busy"):
                if state not in sc:
                    continue
                per = {}
                for nd in ("primary", "backup"):
                    a, b = base["rss_kb"].get(nd), sc[state]["rss_kb"].get(nd)
                    per[nd] = (b - a) * 1024 / sc["held"] if a is not None and b is not None and sc["held"] else None
                kern = (sc[state]["tcp_mem_pages"] - base["tcp_mem_pages"]) * 4096 / sc["held"] \
                    if sc["held"] else None
                sc[f"{state}_bytes_per_conn"] = {"daemon": per, "kernel_tcp_all_namespaces": kern}
            log(f"scale: held {sc['held']} (in duplex: {sc['held_duplex']}); bytes/connection idle "
                f"{sc.get('idle_bytes_per_conn')}, busy {sc.get('busy_bytes_per_conn')}")
            if sc["held"] < n:
                self.error(f"scale: held {sc['held']} of {n} connections")
        except Exception as e:  # noqa: BLE001
            self.error(f"scale: {type(e).__name__}: {e}")
        finally:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
            self.stop_all()

    def mem_snapshot(self):
        return {"rss_kb": {nd: self.daemon_rss_kb(nd) for nd in ("primary", "backup")},
                "tcp_mem_pages": self.tcp_mem_pages()}

    def wait_rss_settled(self, timeout=60):
        last = None
        stable = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cur = sum(v or 0 for v in self.mem_snapshot()["rss_kb"].values())
            if last is not None and abs(cur - last) <= max(256, last * 0.002):
                stable += 1
                if stable >= 3:
                    return
            else:
                stable = 0
            last = cur
            time.sleep(0.25)  # polling interval

    # ------------------------------------------------------------------ all
    def meta(self):
        def ver(args):
            try:
                cp = subprocess.run(args, capture_output=True, timeout=10)
                return (cp.stdout + cp.stderr).decode(errors="replace").strip().splitlines()[0]
            except Exception:  # noqa: BLE001
                return None
        cpu = None
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        git = ver(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
        dirty = None
        try:
            cp = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, timeout=10)
            dirty = bool(cp.stdout.strip())
        except Exception:  # noqa: BLE001
            pass
        return {"profile": self.profile, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
                "cpu": cpu, "git": git, "git_dirty": dirty, "binary": self.binary,
                "nginx": ver(["nginx", "-v"]), "haproxy": ver(["haproxy", "-v"]), "wrk": ver(["wrk", "-v"]),
                "params": self.p, "heartbeat": HEARTBEAT, "offloads": self.offloads}

    def run(self):
        t_start = time.monotonic()
        self.res["meta"] = self.meta()
        self.res["meta"]["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.up()
        only = self.only
        for mode in MODE_ORDER:
            if not only or mode in only:
                self.run_mode(mode)
        if not only or "failover" in only:
            log("--- failover")
            self.failover()
        if not only or "failover-bulk" in only:
            log("--- failover under bulk load (16 x keep-alive 100 KiB)")
            self.failover_bulk()
        if not only or "handover" in only:
            log(f"--- handover (SIGTERM on the {self.handover_node})")
            self.handover()
        if not only or "scale" in only:
            log("--- scale")
            self.scale()
        self.res["meta"]["timing_available"] = bool(self.timing_ok)
        self.res["meta"]["seconds"] = round(time.monotonic() - t_start, 1)


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def raise_nofile():
    # Children (nginx, haproxy, the daemons, the clients) inherit this limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv):
    ap = argparse.ArgumentParser(prog="bench/run", description="Understudy benchmark (needs root).")
    ap.add_argument("--smoke", action="store_true", help="a short version (CI): fewer requests and sizes")
    ap.add_argument("--out", help="results directory (default bench/results/<date>)")
    ap.add_argument("--binary", default=os.environ.get("UNDERSTUDY_BINARY",
                                                        os.path.join(REPO, "build", "understudy")))
    ap.add_argument("--keep-lab", action="store_true", help="keep the lab's workdir (logs) after the run")
    ap.add_argument("--only", help="comma-separated subset (development): " + ",".join(MODE_ORDER) +
                    ",failover,failover-bulk,handover,scale; the run then fails the report check for what it skipped")
    ap.add_argument("--handover-node", choices=("primary", "backup"), default="primary",
                    help="the node the handover scenario stops with SIGTERM (default: the primary)")
    ap.add_argument("--offloads", choices=("on", "off"), default="on",
                    help="the lab's veth offloads (TSO, GSO, checksum) for every mode: on (the kernel's "
                         "defaults) or off (what understudy before issue 11 required)")
    ap.add_argument("--scale-n", type=int, help="connections for the scale test (default: 10000, smoke 600)")
    ap.add_argument("--profile", nargs="?", const="dwarf", choices=("dwarf", "fp"),
                    help="also profile both daemons with `perf record` during one extra duplex point "
                         "(100 KiB, wrk -c16) and write OUT/profile/; the value is perf's call-graph "
                         "mode (default dwarf: the build has no frame pointers, so fp, i.e. plain -g, "
                         "loses the daemon's own frames)")
    ap.add_argument("--render", metavar="DIR", help="only rewrite the report and plots of DIR/results.json")
    a = ap.parse_args(argv)
    if a.render:
        with open(os.path.join(a.render, "results.json")) as fh:
            print(report.write_all(json.load(fh), a.render))
        return 0
    if os.geteuid() != 0:
        print("bench/run: skipped: needs root (network namespaces)")
        return 2
    if not (os.path.isfile(a.binary) and os.access(a.binary, os.X_OK)):
        print(f"bench/run: no understudy binary at {a.binary} (build it first)", file=sys.stderr)
        return 2
    for tool in ("nginx", "haproxy", "wrk", "curl"):
        if not shutil.which(tool):
            print(f"bench/run: {tool} is not installed (scripts/install-deps.sh)", file=sys.stderr)
            return 2
    profile = "smoke" if a.smoke else "full"
    out = a.out or os.path.join(RESULTS_DIR, time.strftime("%Y-%m-%d_%H%M%S") +
                                ("-smoke" if a.smoke else ""))
    os.makedirs(out, exist_ok=True)
    for name in report.EXPECTED_FILES:  # a stale file must not pass for a new one
        try:
            os.unlink(os.path.join(out, name))
        except FileNotFoundError:
            pass
    raise_nofile()
    # A private copy of the binary: a rebuild during the run must not change what is measured.
    tmp = tempfile.mkdtemp(prefix="usbench-")
    binary = os.path.join(tmp, "understudy")
    shutil.copy2(a.binary, binary)
    b = Bench(profile, out, binary, keep_lab=a.keep_lab, only=set(a.only.split(",")) if a.only else None,
              handover_node=a.handover_node, perf=a.profile, offloads=a.offloads == "on")
    if a.scale_n:
        b.p = dict(b.p, scale_n=a.scale_n)
    b_exc = None
    try:
        b.run()
    except BaseException as e:  # noqa: BLE001 - the report is written anyway
        b_exc = e
        b.error(f"the run stopped: {type(e).__name__}: {e}")
    finally:
        if b.lab is not None:
            try:
                b.save_logs()
            except Exception as e:  # noqa: BLE001
                log(f"could not save the logs: {e}")
            try:
                b.lab.down()
            except Exception as e:  # noqa: BLE001
                b.error(f"lab down: {e}")
        shutil.rmtree(tmp, ignore_errors=True)
    b.res["meta"]["binary_source"] = os.path.abspath(a.binary)
    b.res["errors"] = b.errors
    try:
        table = report.write_all(b.res, out)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        b.error(f"report: {type(e).__name__}: {e}")
        table = ""
    missing = [f for f in report.EXPECTED_FILES if not os.path.isfile(os.path.join(out, f))
               or os.path.getsize(os.path.join(out, f)) == 0]
    if missing:
        b.error(f"files not written: {missing}")
    print(table)
    print(f"\nresults: {out}")
    if b.errors:
        print(f"\n{len(b.errors)} ERROR(S):", file=sys.stderr)
        for e in b.errors:
            print("  - " + e, file=sys.stderr)
        if isinstance(b_exc, KeyboardInterrupt):
            return 130
        return 1
    return 0

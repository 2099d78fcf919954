"""The cycles mode of the chaos harness (chaos/run --cycles N; issue 9, "Forever").

Read runner.py first (one trial); this mode reuses its lab, load client and host-like crash, but
runs ONE lab and ONE continuous verified load across N cycles. Each cycle:

  crash one node (eth0 down + SIGKILL) -> the survivor reports simplex (takeover) -> a little
  load in simplex -> restart the crashed node with its usual config (eth0 up + start) -> both
  report duplex (the rejoin time is measured from the start) -> the survivor's
  connections_unprotected reaches 0 (bounded wait) -> next cycle crashes the OTHER node.

Why wait for connections_unprotected == 0: connections open on the survivor when its peer rejoins
are unprotected until the survivor hands each to the joiner at its next request boundary
(docs/ARCHITECTURE.md, "Rejoin"); one mid-reply is still the survivor's alone, and crashing the
survivor then would lose it by design, which is no test of the rejoin. The wait is how long the
connections took to be protected again; longer than --unprotected-wait fails the cycle. The load
keeps its connections (no --rotate, no --conn-max-age by default): a keep-alive connection lives
across every crash and rejoin of the run.

The first failed cycle ends the run (the lab's state is then unknown): the load is stopped, every
reply already sent is still checked, both nodes' logs are kept. Stalls come from the load
client's gap log: a request's longest wait without a byte, assigned to the crash whose moment it
spans (failover stall) or to the rejoin window it overlaps (rejoin stall).
"""
import json
import os
import time
import traceback

from understudy_lab import lab as ul
from understudy_lab.chaos.chaoslab import ChaosLab, start_load_client
from understudy_lab.chaos.plan import OTHER
from understudy_lab.chaos.summary import pct

GAP_LOG_MS = 10          # gaps shorter than this are not logged by the client (stall "<10 ms")
REJOIN_TIMEOUT = 15.0    # s from the start of the rejoiner to both nodes in duplex
TAKEOVER_TIMEOUT = 10.0  # s from the crash to the survivor in simplex


def now():
    return time.monotonic()


class CycleFailed(Exception):
    pass


def _both_duplex(lab, node_a, node_b, last):
    for node in (node_a, node_b):
        p = lab.procs.get((node, "daemon"))
        if p is not None and p.poll() is not None:
            raise ul.LabError(f"daemon on {node} exited with {p.returncode}")
    sa, sb = lab.node_status(node_a), lab.node_status(node_b)
    last["st"] = {node_a: sa, node_b: sb}
    return bool(sa and sb and sa.get("mode") == "duplex" and sb.get("mode") == "duplex")


def run_cycle(lab, i, victim, args, events):
    """One crash -> rejoin cycle; returns its record (raises CycleFailed with a reason)."""
    survivor = OTHER[victim]
    t_crash = now()
    c = {"cycle": i, "crashed": victim, "survivor": survivor, "ok": False, "t_crash": t_crash}
    events.append(c)
    if not lab.daemon_pids(survivor):
        raise CycleFailed(f"{survivor} daemon is not running before the crash")
    lab.crash_host(victim)
    try:
        lab.wait_status(survivor, timeout=TAKEOVER_TIMEOUT, mode="simplex", front=True)
    except (TimeoutError, ul.LabError) as e:
        raise CycleFailed(f"no takeover by {survivor}: {e}"[:2000])
    c["takeover_s"] = round(now() - t_crash, 3)
    t_dwell = now() + args.dwell
    while now() < t_dwell:
        time.sleep(0.005)  # pacing interval: load served in simplex before the restart
    lab.link_up(victim)
    t_start = now()
    c["t_start"] = t_start
    lab.start_node(victim)
    last = {}
    try:
        ul.wait_for(lambda: _both_duplex(lab, victim, survivor, last), REJOIN_TIMEOUT,
                    f"{victim} (restarted) and {survivor} to report duplex",
                    details=lambda: f"last status: {last.get('st')}")
    except (TimeoutError, ul.LabError) as e:
        raise CycleFailed(f"no rejoin: {e}"[:2000])
    t_dup = now()
    c["t_duplex"] = t_dup
    c["rejoin_s"] = round(t_dup - t_start, 3)
    st = last["st"][survivor] or {}
    c["unprotected_at_rejoin"] = st.get("connections_unprotected")
    if c["unprotected_at_rejoin"] is None:
        raise CycleFailed(f"{survivor} status has no connections_unprotected: {st}")
    seen = {}

    def none_unprotected():
        s = lab.node_status(survivor)
        if s is None:
            return False
        seen["st"] = s
        return s.get("connections_unprotected") == 0
    try:
        ul.wait_for(none_unprotected, args.unprotected_wait,
                    f"{survivor}'s connections to be protected again",
                    details=lambda: f"last status: {seen.get('st')}")
    except (TimeoutError, ul.LabError) as e:
        raise CycleFailed(f"connections still unprotected: {e}"[:2000])
    c["unprotected_s"] = round(now() - t_dup, 3)
    c["t_protected"] = now()
    c["ok"] = True
    return c


def assign_stalls(cycles, gaps, t_stop):
    """Per cycle: the longest gap spanning its crash moment (failover stall) and the longest gap
    overlapping [restart, duplex + 1 s] that spans no crash (rejoin stall), in ms; the window ends
    early at the next cycle's crash (cycles follow each other as soon as the connections are
    protected again). GAP_LOG_MS stands for "no logged gap" (shorter ones are not logged)."""
    crashes = [c["t_crash"] for c in cycles]
    for i, c in enumerate(cycles):
        fo, rj = [], []
        rj_end = c.get("t_duplex", t_stop) + 1.0
        if i + 1 < len(cycles):
            rj_end = min(rj_end, cycles[i + 1]["t_crash"])
        for g0, g1, *_ in gaps:
            if g0 <= c["t_crash"] <= g1:
                fo.append(g1 - g0)
            elif ("t_start" in c and g0 <= rj_end and g1 >= c["t_start"]
                  and not any(g0 <= t <= g1 for t in crashes)):
                rj.append(g1 - g0)
        c["failover_stall_ms"] = round(max(fo) * 1000, 1) if fo else GAP_LOG_MS
        c["rejoin_stall_ms"] = round(max(rj) * 1000, 1) if rj else GAP_LOG_MS


def cycle_line(c, n):
    s = (f"cycle {c['cycle']}/{n} crashed={c['crashed']} "
         f"takeover={c.get('takeover_s', '?')}s rejoin={c.get('rejoin_s', '?')}s "
         f"unprotected@rejoin={c.get('unprotected_at_rejoin', '?')} "
         f"protected_after={c.get('unprotected_s', '?')}s {'OK' if c['ok'] else 'FAIL'}")
    if c.get("error"):
        s += f"\n    error: {c['error'][:1500]}"
    return s


def _ms(v):
    return f"{v:.0f}" if isinstance(v, (int, float)) else "?"


def summary_lines(cycles, n, load, lab_error):
    done = [c for c in cycles if c["ok"]]
    L = load or {}
    k = L.get("failed_by_kind", {})
    rj = [c["rejoin_s"] for c in cycles if "rejoin_s" in c]   # a cycle may fail after its rejoin
    fo = [c["failover_stall_ms"] for c in cycles if "failover_stall_ms" in c]
    rs = [c["rejoin_stall_ms"] for c in cycles if "rejoin_s" in c]
    tk = [c["takeover_s"] for c in cycles if "takeover_s" in c]
    out = [
        f"CYCLES done={len(done)}/{n} failed={len(cycles) - len(done)} "
        f"requests sent={L.get('sent', 0)} completed={L.get('completed', 0)} "
        f"lost={L.get('failed', 0)} (reset {k.get('reset', 0)} timeout {k.get('timeout', 0)} "
        f"truncated {k.get('truncated', 0)} wrong {k.get('wrong', 0)} connect {k.get('connect', 0)}) "
        f"wrong_bytes={k.get('wrong', 0)} late={L.get('late', 0)} connections={L.get('connects', 0)}",
        f"REJOIN s (restart -> both duplex) p50={pct(rj, 50)} p99={pct(rj, 99)} "
        f"max={max(rj) if rj else 0}; takeover s p50={pct(tk, 50)} max={max(tk) if tk else 0}",
        f"STALL ms (a request's longest wait for a byte; <{GAP_LOG_MS} not logged) "
        f"failover p50={_ms(pct(fo, 50))} p99={_ms(pct(fo, 99))} max={_ms(max(fo) if fo else 0)}; "
        f"rejoin p50={_ms(pct(rs, 50))} p99={_ms(pct(rs, 99))} max={_ms(max(rs) if rs else 0)}; "
        f"whole run max={L.get('stall_max_ms', '?')}",
        "note: connections open on the survivor at a rejoin are protected again at their next "
        "request boundary; each cycle waits for that before crashing the other node",
    ]
    if lab_error:
        out.append(f"error: {lab_error[:2000]}")
    return out


def snapshot_sockets(lab, outdir, i):
    """The TCP sockets of the client and both nodes when a cycle fails (ss -tnoi): which
    connections are still open, with their queues, to match the survivor's status counts."""
    for ns in ("client", "primary", "backup"):
        cp = ul.sh(["ip", "netns", "exec", lab.ns(ns), "ss", "-tnoi"], check=False)
        with open(os.path.join(outdir, f"cycle-{i}-ss-{ns}.txt"), "wb") as f:
            f.write(cp.stdout + cp.stderr)


def keep_logs(lab, outdir):
    for node in ("primary", "backup"):
        t = lab.log_tail(node, "daemon", 50_000_000)
        if t != "(no log)":
            with open(os.path.join(outdir, f"{node}-daemon.log"), "w") as f:
                f.write(t)
        for name in ("access.log", "error.log"):
            src = os.path.join(lab.nginx_dir(node), "logs", name)
            if os.path.exists(src):
                with open(src, "rb") as fi, open(os.path.join(outdir, f"{node}-nginx-{name}"), "wb") as fo:
                    fi.seek(max(0, os.path.getsize(src) - 2_000_000))
                    fo.write(fi.read())


def run(args, outdir, meta, loadclient):
    """The whole cycles run; returns the exit status (0 ok, 1 lost/wrong reply or failed cycle)."""
    n = args.cycles
    print(f"chaos: {n} cycles (crash -> rejoin, alternating, first {args.first_role}) under one "
          f"verified load; results in {outdir}", flush=True)
    lab = ChaosLab(binary=args.binary, limits=args.limits)
    cycles, load, error, client = [], None, None, None
    t_run = now()
    try:
        lab.up()
        lab.start_understudy_pair()
        manifest = os.path.join(lab.workdir, "manifest.json")
        with open(manifest, "w") as f:
            json.dump(lab.manifest, f)
        ready, stop = (os.path.join(lab.workdir, x) for x in ("load-ready", "load-stop"))
        cargs = loadclient + ["--manifest", manifest, "--seed", str(args.seed),
                              "--ready", ready, "--stop-file", stop,
                              "--get", str(args.get), "--post", str(args.post), "--pipe", str(args.pipe),
                              "--big", "0", "--timeout", str(args.client_timeout), "--late", str(args.late),
                              "--drain", str(2 * args.client_timeout + 30), "--rotate", str(args.rotate),
                              "--conn-max-age", str(args.conn_max_age),
                              "--gap-log-ms", str(GAP_LOG_MS)]
        client = start_load_client(lab, cargs, ready)
        victim = args.first_role
        for i in range(1, n + 1):
            try:
                run_cycle(lab, i, victim, args, cycles)
            except CycleFailed as e:
                cycles[-1]["error"] = str(e)
                snapshot_sockets(lab, outdir, i)
            c = cycles[-1]
            print(cycle_line(c, n), flush=True)
            if not c["ok"]:
                break
            victim = OTHER[victim]
        t_post = now() + args.dwell
        while now() < t_post:
            time.sleep(0.005)  # pacing interval: load past the last rejoin
        for node in ("primary", "backup"):  # the counters, for the post-mortem of a failed run
            with open(os.path.join(outdir, f"status-{node}.json"), "w") as f:
                json.dump(lab.node_status(node), f, indent=1)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"[:3000]
        print(f"error: {error}\n{traceback.format_exc()[-3000:]}", flush=True)
    finally:
        if client is not None:
            open(os.path.join(lab.workdir, "load-stop"), "w").close()
            try:
                out, err = client.communicate(timeout=args.client_timeout * 4 + 120)
                load = json.loads(out.decode().strip().splitlines()[-1])
            except Exception as e:
                client.kill()
                client.wait()
                error = error or f"load client gave no result: {type(e).__name__}: {e}"
        try:
            keep_logs(lab, outdir)
        except Exception as e:
            print(f"note: keeping the logs failed: {e}", flush=True)
        try:
            lab.down()
        except Exception as e:
            print(f"note: lab down: {e}", flush=True)
    if load is not None:
        assign_stalls(cycles, load.get("gaps") or [], load.get("t_stop", now()))
        if not load.get("ok"):
            error = error or f"load client problem: {load.get('client_errors')} hung={load.get('hung_workers')}"
    L = load or {}
    for f in (L.get("failures") or [])[:5]:
        print(f"    {f['kind']}: {f['request']} on {f['local']}: {f['error'][:200]}", flush=True)
    for ldet in (L.get("late_requests") or [])[:5]:
        print(f"    late: {ldet['worker']} on {ldet['local']}: no byte for {ldet['stall_ms']} ms, then complete",
              flush=True)
    with open(os.path.join(outdir, "cycles.json"), "w") as f:
        json.dump({"meta": meta, "cycles": cycles, "error": error,
                   "load": {k: v for k, v in L.items() if k != "gaps"},
                   "long_gaps": [g for g in L.get("gaps") or [] if g[1] - g[0] >= 0.5],
                   "run_s": round(now() - t_run, 1)},
                  f, indent=1)
    print("", flush=True)
    for s in summary_lines(cycles, n, load, error):
        print(s, flush=True)
    per = " ".join(_ms(c.get("failover_stall_ms")) + "/" + _ms(c.get("rejoin_stall_ms")) for c in cycles)
    print(f"per-cycle stalls ms (failover/rejoin): {per}", flush=True)
    print(f"run {round(now() - t_run, 1)} s; logs and cycles.json in {outdir}", flush=True)
    done = sum(1 for c in cycles if c["ok"])
    if load is None or L.get("failed"):
        print(f"FAIL: {L.get('failed', '?')} replies lost or wrong", flush=True)
        return 1
    if error or done < n:
        print(f"FAIL: {done}/{n} cycles done", flush=True)
        return 1
    return 0

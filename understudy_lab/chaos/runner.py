"""Randomized crash-under-load harness (see docs/RELIABILITY.md; entry point: chaos/run).

Each trial: a fresh lab; Understudy on both nodes (duplex), or keepalived (VRRP) + nginx; optional
random loss / duplication on the lab bridge; steady verifying load (understudy_lab/chaos/loadclient.py) from the
client namespace; at a seeded random moment the primary or the backup dies like a host (eth0
down + SIGKILL), either at a random time or at one of the daemon's fault points (docs/FAULTS.md,
the phases of the paper's Table 2); load continues past the takeover, then every request already
sent must finish. One summary line per trial, a total per target, JSON lines in --out.

For the keepalived target, fault points do not exist: the same role dies by lab crash at the
moment the fault point would have been armed.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import traceback

from understudy_lab import lab as ul
from understudy_lab.chaos import cycles, report
from understudy_lab.chaos.chaoslab import KEEPALIVED_TARGETS, ChaosLab, start_load_client
from understudy_lab.chaos.plan import OTHER, trial_plan
from understudy_lab.chaos.summary import line, total_line

REPO = ul.REPO_ROOT
LOADCLIENT = ul.python_module("understudy_lab.chaos.loadclient")
TARGETS = ("understudy",) + tuple(KEEPALIVED_TARGETS)


def now():
    return time.monotonic()


# --------------------------------------------------------------------------- one trial

class TrialError(Exception):
    pass


def survivor_gone(lab, survivor, res):
    """True (and the trial marked as an error) if the node that should survive the crash has
    exited already: e.g. a false failover (heartbeats late under CPU starvation) made the backup
    take over and the primary fail-stop. Crashing the other node then is no failover test."""
    if lab.daemon_pids(survivor):
        return False
    res["error"] = (f"{survivor} daemon exited before the crash, so the crash was not done "
                    f"(false failover?); {survivor} log tail: {lab.log_tail(survivor, 'daemon', 600)}")
    res["crashed_by"] = "skipped: survivor gone"
    return True


def run_trial(plan, target, args, outdir):
    """Run one trial; return a result dict (never raises for trial-level problems)."""
    res = {"target": target, **plan, "ok": False, "error": None}
    role, survivor = plan["role"], OTHER[plan["role"]]
    lab = ChaosLab(binary=args.binary, port80=(target != "understudy"), limits=args.limits)
    t_trial = now()
    captures = []
    tdir = os.path.join(outdir, f"trial-{plan['seed']}-{target}")
    client = None
    try:
        lab.up()
        # ---- the service
        if target == "understudy":
            lab.start_understudy_pair()
        else:
            lab.start_keepalived_pair(target)
        if args.capture and target == "understudy":
            captures = start_captures(lab)
        # ---- the network
        if plan["loss"]:
            lab.drop_random(plan["loss"])
        if plan["dup"]:
            lab.dup_random(plan["dup"])
        # ---- the load
        manifest = os.path.join(lab.workdir, "manifest.json")
        with open(manifest, "w") as f:
            json.dump(lab.manifest, f)
        ready, stop, crashf = (os.path.join(lab.workdir, n) for n in ("load-ready", "load-stop", "crash-at"))
        cargs = LOADCLIENT + ["--manifest", manifest, "--seed", str(plan["client_seed"]),
                 "--ready", ready, "--stop-file", stop, "--crash-file", crashf,
                 "--get", str(args.get), "--post", str(args.post), "--pipe", str(args.pipe),
                 "--big", "1" if plan["big"] else "0", "--timeout", str(args.client_timeout),
                 "--late", str(args.late), "--drain", str(2 * args.client_timeout + 30)]
        client = start_load_client(lab, cargs, ready)
        t_load = now()
        # ---- steady load, then the crash
        deadline = t_load + plan["crash_after"]
        crash = plan["crash"]
        if crash != "random" and target == "understudy":
            while now() < deadline:
                time.sleep(0.005)  # pacing interval of the seeded crash moment
            cp = lab.run_in(role, [lab.binary, "fault", "--config", lab.config_path(role), crash])
            if cp.returncode != 0:
                raise TrialError(f"arming {crash} failed: {cp.stdout!r} {cp.stderr!r}")
            t_armed = now()
            try:
                ul.wait_for(lambda: not lab.daemon_pids(role), args.fault_wait,
                            f"{role} to die at {crash}", interval=0.002)
                res["crashed_by"] = "fault"
            except TimeoutError:
                # The point was not reached under this load: plain crash, unless the other node is
                # gone already (then crashing this one would only end the service).
                if not survivor_gone(lab, survivor, res):
                    lab.crash_host(role)
                    res["crashed_by"] = "fault-not-reached"
            t_crash = now()
            res["fault_delay"] = round(t_crash - t_armed, 3)
            log = lab.log_tail(role, "daemon", 20000)
            if res["crashed_by"] == "fault" and f"fault: {crash.split(':')[0]} reached" not in log:
                res["crashed_by"] = "died-elsewhere"
        else:
            while now() < deadline:
                time.sleep(0.005)  # pacing interval of the seeded crash moment
            if target != "understudy" or not survivor_gone(lab, survivor, res):
                lab.crash_host(role)
                res["crashed_by"] = "crash" if crash == "random" else "crash(fault-equivalent)"
            t_crash = now()
        with open(crashf + ".tmp", "w") as f:
            f.write(repr(t_crash))
        os.replace(crashf + ".tmp", crashf)
        res["crash_at"] = round(t_crash - t_load, 3)
        # ---- the takeover
        if not res.get("crashed_by", "").startswith("skipped"):
            try:
                if target == "understudy":
                    lab.wait_status(survivor, timeout=10, mode="simplex", front=True)
                elif role == "primary":
                    ul.wait_for(lambda: lab.has_vip("backup"), 15, "backup to take the VIP")
                res["takeover_s"] = round(now() - t_crash, 3)
                if target != "understudy" and role == "backup":
                    res["takeover_s"] = None   # nothing to take over: the primary keeps the VIP
            except (TimeoutError, ul.LabError) as e:
                res["takeover_s"] = None
                res["error"] = f"no takeover: {e}"[:2000]
        # ---- load past the takeover, then stop and drain
        t_post = now() + args.post_crash
        while now() < t_post:
            time.sleep(0.005)  # pacing interval
        open(stop, "w").close()
        try:
            out, err = client.communicate(timeout=args.client_timeout * 4 + 120)
        except Exception:
            client.kill()
            out, err = client.communicate()
            raise TrialError("load client did not finish")
        try:
            load = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise TrialError(f"load client printed no JSON (rc {client.returncode}): "
                             f"{out[-500:]!r} {err[-2000:]!r}")
        res["load"] = load
        if not load.get("ok"):
            res["error"] = res["error"] or f"load client problem: {load.get('client_errors')} hung={load.get('hung_workers')}"
        if target == "understudy":
            st = lab.node_status(survivor) or {}
            res["survivor"] = {k: st.get(k) for k in ("mode", "front", "failovers", "connections")}
            res["survivor_message"] = st.get("message")
            res["survivor_packet"] = st.get("packet")   # packet-layer counters (drops, fake acks)
            if st.get("failovers") != 1 and not res["error"]:
                res["error"] = f"survivor status after the trial: {res['survivor']}"
        res["dropped"] = sum(r["packets"] for r in lab.loss_rules()) if plan["loss"] else 0
        res["duplicated"] = lab.duplicated() if plan["dup"] else 0
        res["ok"] = res["error"] is None and load["failed"] == 0
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"[:3000]
        res["traceback"] = traceback.format_exc()[-3000:]
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        late = (res.get("load") or {}).get("late", 0)
        keep = not res["ok"] or (late and target == "understudy")
        stop_captures(captures, tdir if keep else None)
        if keep and (target == "understudy" or res.get("error")):
            try:
                os.makedirs(tdir, exist_ok=True)
                for node in ("primary", "backup"):
                    for kind in ("daemon", "keepalived"):
                        t = lab.log_tail(node, kind, 200000)
                        if t != "(no log)":
                            with open(os.path.join(tdir, f"{node}-{kind}.log"), "w") as f:
                                f.write(t)
                for node in ("primary", "backup"):
                    for name in ("access.log", "error.log"):
                        src = os.path.join(lab.nginx_dir(node), "logs", name)
                        if os.path.exists(src):
                            with open(src, "rb") as fi, open(os.path.join(tdir, f"{node}-nginx-{name}"), "wb") as fo:
                                fi.seek(max(0, os.path.getsize(src) - 400000))
                                fo.write(fi.read())
                with open(os.path.join(tdir, "result.json"), "w") as f:
                    json.dump(res, f, indent=1)
                res["logs"] = tdir
            except Exception:
                pass
        try:
            lab.down()
        except Exception as e:
            res["down_error"] = str(e)
    res["trial_s"] = round(now() - t_trial, 2)
    return res


CAPTURE_POINTS = (("client", "eth0"), ("primary", "eth0"), ("primary", "understudy0"),
                  ("backup", "eth0"), ("backup", "understudy0"))


def start_captures(lab):
    """One tcpdump per point, each awaited until it reports that it listens."""
    caps = []
    for node, dev in CAPTURE_POINTS:
        path = os.path.join(lab.workdir, f"{node}-{dev}.pcap")
        p = subprocess.Popen(["ip", "netns", "exec", lab.ns(node), "tcpdump", "-i", dev, "-s", "160",
                              "-U", "-n", "-w", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        line = p.stderr.readline().decode(errors="replace")
        if "listening on" not in line:
            p.kill()
            raise TrialError(f"tcpdump on {node}/{dev} did not start: {line.strip()}")
        caps.append((p, path))
    return caps


def stop_captures(caps, keep_dir):
    for p, path in caps:
        p.terminate()
        p.wait()
        if keep_dir and os.path.exists(path):
            os.makedirs(keep_dir, exist_ok=True)
            shutil.copy(path, keep_dir)


# --------------------------------------------------------------------------- reporting

# --------------------------------------------------------------------------- main

def parse_limits(s):
    out = {}
    for item in parse_list(s):
        key, sep, value = item.partition("=")
        if not sep or not key or not value.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: want KEY=N, e.g. syn_cookie_threshold=0")
        out[key] = int(value)
    return out


def parse_list(s, conv=str):
    return [conv(x) for x in s.split(",") if x.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="chaos/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None, help="run seed (default: random, printed)")
    ap.add_argument("--trial-seed", type=int, default=None, help="replay exactly one trial")
    ap.add_argument("--repeat", type=int, default=1, help="with --trial-seed: replay it this many times")
    ap.add_argument("--loss", default="0", help="loss levels in %%, cycled over trials (e.g. 0,1,5)")
    ap.add_argument("--dup", default="0", help="duplication levels in %%, cycled (e.g. 0,1)")
    ap.add_argument("--roles", default="primary,backup")
    ap.add_argument("--target", default="understudy,keepalived",
                    help=f"comma list of {', '.join(TARGETS)}; each trial runs on every target")
    ap.add_argument("--phases", default="random,fault", help="crash kinds to draw from: random,fault")
    ap.add_argument("--report", help="write the markdown report here (e.g. docs/RELIABILITY.md)")
    ap.add_argument("--from-results", help="only write --report from this results.jsonl (no trials)")
    ap.add_argument("--out", help="directory for results.jsonl and logs of failing trials")
    ap.add_argument("--binary", default=os.environ.get("UNDERSTUDY_BINARY", os.path.join(REPO, "build", "understudy")))
    ap.add_argument("--get", type=int, default=5, help="keep-alive GET connections")
    ap.add_argument("--post", type=int, default=3, help="keep-alive POST /echo connections")
    ap.add_argument("--pipe", type=int, default=2, help="pipelining connections")
    ap.add_argument("--post-crash", type=float, default=0.6, help="s of load after the takeover")
    ap.add_argument("--compare-every", type=int, default=1,
                    help="run the keepalived target(s) only on every K-th trial (long runs)")
    ap.add_argument("--fault-wait", type=float, default=2.5, help="s to wait for an armed point to fire")
    ap.add_argument("--client-timeout", type=float, default=60.0,
                    help="socket timeout of the load client: a request that gets no byte for this "
                         "long fails (timeout)")
    ap.add_argument("--late", type=float, default=8.0,
                    help="a request that completes after waiting this long without a byte is "
                         "counted late (reported, not failed; its trial keeps its logs)")
    ap.add_argument("--stop-on-fail", action="store_true")
    ap.add_argument("--capture", action="store_true",
                    help="tcpdump (headers only) on the client's eth0 and each node's eth0 and TUN; "
                         "the captures are kept with the logs of a failing trial")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="use --binary in place instead of a copy taken at the start")
    ap.add_argument("--limits", default={}, type=parse_limits, metavar="KEY=N[,KEY=N...]",
                    help="[limits] keys for both daemons, e.g. syn_cookie_threshold=0 (every "
                         "connection made from a SYN cookie)")
    ap.add_argument("--ci", action="store_true", help="exit 77 (CTest: skipped) without root")
    cy = ap.add_argument_group("cycles mode (understudy_lab/chaos/cycles.py): one lab, one load, "
                               "N crash -> rejoin cycles alternating the crashed node")
    cy.add_argument("--cycles", type=int, default=None, help="run N cycles instead of trials")
    cy.add_argument("--first-role", choices=("primary", "backup"), default="primary",
                    help="the node crashed in cycle 1 (then the other, and so on)")
    cy.add_argument("--rotate", type=float, default=0.0,
                    help="probability that a POST / pipelined batch ends its connection (GETs: "
                         "0.1 always); 0: they keep their connections across every cycle")
    cy.add_argument("--conn-max-age", type=float, default=0.0,
                    help="every load connection ends at its first request boundary after this "
                         "many s (0: never)")
    cy.add_argument("--dwell", type=float, default=0.5,
                    help="s of load in simplex before the restart (and after the last cycle)")
    cy.add_argument("--unprotected-wait", type=float, default=30.0,
                    help="s the survivor's connections may take to be protected again (each at "
                         "its next request boundary); longer fails the cycle")
    args = ap.parse_args(argv)

    # Which options were given: parse again with every default replaced by a sentinel.
    given = set()
    unset = object()
    saved = {a.dest: a.default for a in ap._actions}
    for a in ap._actions:
        a.default = unset
    try:
        probe = ap.parse_args(argv)
        given = {d for d, v in vars(probe).items() if v is not unset}
    finally:
        for a in ap._actions:
            a.default = saved[a.dest]
    cycles_only = {"first_role", "rotate", "conn_max_age", "dwell", "unprotected_wait"}
    both = {"seed", "out", "binary", "get", "post", "pipe", "client_timeout", "late",
            "no_snapshot", "ci", "cycles", "help", "limits"}
    if args.cycles is not None:
        bad = sorted(given - cycles_only - both)
        if bad:
            ap.error("--cycles runs one lab with one load and alternating crashes; it does not take "
                     + ", ".join("--" + d.replace("_", "-") for d in bad))
        if args.cycles < 1:
            ap.error("--cycles needs N >= 1")
        if not 0 <= args.rotate <= 1:
            ap.error("--rotate must be in [0, 1]")
    elif given & cycles_only:
        ap.error(", ".join("--" + d.replace("_", "-") for d in sorted(given & cycles_only))
                 + ": cycles-mode options, valid only with --cycles")

    if args.from_results:
        with open(args.from_results) as f:
            results = [json.loads(x) for x in f if x.strip()]
        meta = results[0].get("meta", {}) if results else {}
        # One result per (trial seed, target): a results file appended to by two processes by
        # mistake holds some trials twice.
        seen, uniq = set(), []
        for r in results:
            if "target" in r and (r["seed"], r["target"]) not in seen:
                seen.add((r["seed"], r["target"]))
                uniq.append(r)
        results = uniq
        report.write(args.report, results, meta)
        print(f"report written to {args.report} from {len(results)} trial results")
        return 0

    if os.geteuid() != 0:
        print("chaos/run needs root (network namespaces)", file=sys.stderr)
        return 77 if args.ci else 2
    targets = ["understudy"] if args.cycles is not None else parse_list(args.target)
    for t in targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t}")
    roles = parse_list(args.roles)
    losses = parse_list(args.loss, float)
    losses = [int(x) if x == int(x) else x for x in losses]
    dups = parse_list(args.dup, float)
    dups = [int(x) if x == int(x) else x for x in dups]
    phases = parse_list(args.phases)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(31)
    if not os.path.exists(args.binary) and "understudy" in targets:
        print(f"no daemon binary at {args.binary}", file=sys.stderr)
        return 2
    out = args.out or f"/tmp/understudy-chaos-{time.strftime('%Y%m%d-%H%M%S')}-{seed}"
    os.makedirs(out, exist_ok=True)
    if "understudy" in targets and not args.no_snapshot:
        # Run every trial with one copy of the daemon: a rebuild during a long run must not
        # change (or briefly remove) the binary under test.
        snap = os.path.join(out, "understudy")
        shutil.copy2(args.binary, snap)
        args.binary = snap
    resfile = os.path.join(out, "results.jsonl")
    meta = {"seed": seed, "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "binary": args.binary, "kernel": os.uname().release}
    if args.cycles is None:
        meta["trials"] = args.trials
    else:
        meta["cycles"] = args.cycles
    try:
        with open(args.binary, "rb") as f:
            meta["binary_sha256"] = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        pass
    try:
        meta["commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True).stdout.strip()
        meta["dirty"] = bool(subprocess.run(["git", "-C", REPO, "status", "--porcelain", "src"],
                                            capture_output=True, text=True).stdout.strip())
        meta["keepalived"] = subprocess.run(["/usr/sbin/keepalived", "--version"], capture_output=True,
                                            text=True).stderr.splitlines()[0]
    except Exception:
        pass
    if args.cycles is not None:
        args.seed = seed
        print(f"chaos: commit {meta.get('commit', '?')}{' (src dirty)' if meta.get('dirty') else ''}, "
              f"seed {seed} (replay the load: chaos/run --cycles {args.cycles} --seed {seed})", flush=True)
        return cycles.run(args, out, meta, LOADCLIENT)
    with open(resfile, "a") as f:
        f.write(json.dumps({"meta": meta}) + "\n")

    if args.trial_seed is not None:
        plans = [trial_plan(args.trial_seed, roles[0], losses[0], dups[0], phases)] * args.repeat
        print(f"chaos: replaying trial seed {args.trial_seed}{f' {args.repeat} times' if args.repeat > 1 else ''}; "
              f"results in {out}", flush=True)
    else:
        rng = random.Random(seed)
        plans = []
        for i in range(args.trials):
            plans.append(trial_plan(rng.getrandbits(31), roles[(i // len(losses)) % len(roles)],
                                    losses[i % len(losses)], dups[(i // (len(losses) * len(roles))) % len(dups)],
                                    phases))
        print(f"chaos: seed {seed}, {args.trials} trials x targets {','.join(targets)}; "
              f"results in {out}  (replay the run: chaos/run --seed {seed} --trials {args.trials} "
              f"--loss {args.loss} --dup {args.dup} --roles {args.roles} --target {args.target})", flush=True)

    results = []
    n = len(plans)
    for i, plan in enumerate(plans, 1):
        for target in targets:
            if target != "understudy" and (i - 1) % args.compare_every:
                continue
            r = run_trial(plan, target, args, out)
            results.append(r)
            with open(resfile, "a") as f:
                f.write(json.dumps({k: v for k, v in r.items() if k != "traceback"}) + "\n")
            print(line(i, n, r), flush=True)
        if args.report and i % 50 == 0 and i < n:
            report.write(args.report, results, meta)   # progress: the completed trials so far
        if args.stop_on_fail and any(not r["ok"] and r["target"] == "understudy" for r in results):
            break
    print("", flush=True)
    for target in targets:
        print(total_line(results, target), flush=True)
    if args.report:
        report.write(args.report, results, meta)
        print(f"report written to {args.report}")
    us = [r for r in results if r["target"] == "understudy"]
    lost = sum((r.get("load") or {}).get("failed", 0) for r in us)
    errs = [r for r in us if r.get("error")]
    if lost:
        print(f"FAIL: Understudy lost or corrupted {lost} replies "
              f"(seeds: {sorted({r['seed'] for r in us if (r.get('load') or {}).get('failed')})})", flush=True)
        return 1
    if errs:
        print(f"FAIL: {len(errs)} Understudy trials did not complete (seeds: {[r['seed'] for r in errs]})", flush=True)
        return 1
    bad_infra = [r for r in results if r.get("error") and r["target"] != "understudy"]
    if bad_infra:
        print(f"note: {len(bad_infra)} comparison trials had harness errors (seeds: {[r['seed'] for r in bad_infra]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

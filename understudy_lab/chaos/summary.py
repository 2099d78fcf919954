"""One line per trial and the totals per target, printed by the runner and used by the report."""

from understudy_lab.chaos.plan import replay_cmd


def line(i, n, r):
    L = r.get("load") or {}
    k = L.get("failed_by_kind", {})
    status = "OK" if r["ok"] else ("FAIL" if L.get("failed") else "ERROR")
    s = (f"trial {i}/{n} seed={r['seed']} target={r['target']} role={r['role']} loss={r['loss']}% "
         f"dup={r['dup']}% crash={r['crash']}{' [' + r.get('crashed_by', '?') + ']' if r['crash'] != 'random' else ''}"
         f" @{r.get('crash_at', '?')}s big={'y' if r['big'] else 'n'}"
         f" sent={L.get('sent', 0)} completed={L.get('completed', 0)} failed={L.get('failed', 0)}"
         f" (reset {k.get('reset', 0)} timeout {k.get('timeout', 0)} truncated {k.get('truncated', 0)}"
         f" wrong {k.get('wrong', 0)} connect {k.get('connect', 0)})"
         f" inflight@crash={L.get('in_flight_at_crash', '?')} stall={L.get('stall_max_ms', '?')}ms"
         f" late={L.get('late', 0)}"
         f" takeover={'n/a' if r.get('takeover_s') is None else str(r['takeover_s']) + 's'} {status}")
    if not r["ok"]:
        if r.get("error"):
            s += f"\n    error: {r['error'][:600]}"
        for fdet in (L.get("failures") or [])[:3]:
            s += f"\n    {fdet['kind']}: {fdet['request']} on {fdet['local']}: {fdet['error'][:200]}"
            if fdet.get("tcp"):
                t = fdet["tcp"]
                s += (f" [tcp unacked={t['unacked']} retransmits={t['retransmits']} backoff={t['backoff']}"
                      f" total_retrans={t['total_retrans']} last_data_recv={t['last_data_recv']}ms]")
    for ldet in (L.get("late_requests") or [])[:3]:
        s += f"\n    late: {ldet['worker']} on {ldet['local']}: no byte for {ldet['stall_ms']} ms, then complete"
    if not r["ok"] or L.get("late"):
        s += f"\n    replay: {replay_cmd(r, r['target'])}"
        if r.get("logs"):
            s += f"\n    logs: {r['logs']}"
    return s


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def totals(results, target):
    rs = [r for r in results if r["target"] == target]
    t = {"trials": len(rs), "sent": 0, "completed": 0, "failed": 0, "kinds": {}, "late": 0,
         "trials_failed": 0, "trials_error": 0, "stalls": [], "takeovers": []}
    for r in rs:
        L = r.get("load") or {}
        t["sent"] += L.get("sent", 0)
        t["completed"] += L.get("completed", 0)
        t["failed"] += L.get("failed", 0)
        t["late"] += L.get("late", 0)
        for k, v in (L.get("failed_by_kind") or {}).items():
            t["kinds"][k] = t["kinds"].get(k, 0) + v
        if L.get("failed"):
            t["trials_failed"] += 1
        if r.get("error"):
            t["trials_error"] += 1
        if "stall_max_ms" in L:
            t["stalls"].append(L["stall_max_ms"])
        if r.get("takeover_s") is not None:
            t["takeovers"].append(r["takeover_s"])
    return t


def total_line(results, target):
    t = totals(results, target)
    st = t["stalls"]
    k = t["kinds"]
    return (f"TOTAL target={target} trials={t['trials']} sent={t['sent']} completed={t['completed']} "
            f"failed={t['failed']} (reset {k.get('reset', 0)} timeout {k.get('timeout', 0)} "
            f"truncated {k.get('truncated', 0)} wrong {k.get('wrong', 0)} connect {k.get('connect', 0)}) "
            f"trials_with_failures={t['trials_failed']} trial_errors={t['trials_error']} late={t['late']} "
            f"stall_ms p50={pct(st, 50)} p99={pct(st, 99)} max={max(st) if st else 0}")

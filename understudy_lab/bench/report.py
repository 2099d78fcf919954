"""Turn the benchmark's results into report.md, CSV/JSON and PNG plots (matplotlib, Agg)."""
import csv
import json
import os

from understudy_lab.bench.scenarios import MODE_ORDER, SIZE_LABEL, SIZE_ORDER

EXPECTED_FILES = ["report.md", "results.json", "latency.csv", "latency_samples.csv", "throughput.csv",
                  "breakdown.csv", "failover.csv", "handover.csv", "cpu.csv", "latency_series.png",
                  "latency_vs_size.png",
                  "throughput.png", "breakdown.png", "failover.png"]

# The paper's Table 3 and Table 5 ("Avg" column, ms; a new connection per request, 350 MHz
# Pentium II, 100 Mbit/s Ethernet, Solaris 7).
PAPER_MS = {("duplex", "1k"): 6.05, ("simplex", "1k"): 4.56, ("null", "1k"): 3.27, ("direct", "1k"): 1.23,
            ("duplex", "5k"): 8.41, ("direct", "5k"): 1.81, ("duplex", "10k"): 10.85, ("direct", "10k"): 2.34}
# Table 4 (duplex, 1 KiB): Avg / "Mean" ms
PAPER_T4 = {"client": (6.05, 6.08), "raw": (5.42, 5.26), "tcp": (2.52, 2.40), "server": (0.61, 0.57)}

LAT_RATIOS = [("duplex", "direct"), ("simplex", "direct"), ("null", "direct"), ("duplex", "simplex"),
              ("duplex", "null"), ("duplex", "nginx-proxy"), ("duplex", "haproxy"),
              ("nginx-proxy", "direct"), ("haproxy", "direct")]
TPUT_RATIOS = [("duplex", "direct"), ("duplex", "nginx-proxy"), ("duplex", "haproxy"), ("simplex", "direct"),
               ("null", "direct"), ("nginx-proxy", "direct"), ("haproxy", "direct")]
COLORS = {"direct": "#222222", "nginx-proxy": "#2ca02c", "haproxy": "#9467bd", "null": "#1f77b4",
          "simplex": "#ff7f0e", "duplex": "#d62728"}


def f(x, nd=2):
    return "—" if x is None else f"{x:.{nd}f}"


def paper_ratio(a, b, size):
    x, y = PAPER_MS.get((a, size)), PAPER_MS.get((b, size))
    return x / y if x and y else None


class R:
    def __init__(self, res):
        self.res = res
        self.lat = {(r["mode"], r["size"], r["conn"]): r for r in res["latency"]}
        self.tput = {(r["mode"], r["size"], r["conc"]): r for r in res["throughput"]}
        self.timing = {}
        for t in res["timing"]:
            self.timing[(t["mode"], t["size"], t["conn"], t["node"])] = t
        # (kind, mode, size, load, node, role) -> CPU row; load is "c16", "new" or "keep"
        self.cpu = {(c["kind"], c["mode"], c["size"], c["load"], c["node"], c["role"]): c
                    for c in res.get("cpu", [])}

    def lat_mean(self, mode, size, conn, key="mean"):
        r = self.lat.get((mode, size, conn))
        return r[key] if r and r["n"] else None

    def lat_ratio(self, a, b, size, conn, key="mean"):
        x, y = self.lat_mean(a, size, conn, key), self.lat_mean(b, size, conn, key)
        return x / y if x and y else None

    def rps(self, mode, size, conc):
        r = self.tput.get((mode, size, conc))
        return r["rps"] if r else None

    def tput_ratio(self, a, b, size, conc):
        x, y = self.rps(a, size, conc), self.rps(b, size, conc)
        return x / y if x and y else None

    def hist(self, mode, size, conn, node, name):
        t = self.timing.get((mode, size, conn, node))
        if not t or not t.get("timing"):
            return None
        h = t["timing"].get(name)
        return h if h and h.get("count") else None

    def cpu_us(self, mode, size, load, node=None, role=None, kind="throughput"):
        """CPU µs per request of the processes of ``node`` and ``role`` (None: all) at a point."""
        rows = [c for (k, m, s, ld, n, ro), c in self.cpu.items() if (k, m, s, ld) == (kind, mode, size, load)
                and node in (None, n) and role in (None, ro)]
        if not rows or not rows[0]["requests"]:
            return None
        return sum(c["user_s"] + c["sys_s"] for c in rows) * 1e6 / rows[0]["requests"]

    def breakdown(self, mode, size, conn):
        """Per request, ms: client, message layer (primary), server, replication, packet layer."""
        out = {"client": self.lat_mean(mode, size, conn), "client_p50": self.lat_mean(mode, size, conn, "p50")}
        req = self.hist(mode, size, conn, "primary", "request_us")
        srv = self.hist(mode, size, conn, "primary", "server_us")
        rep = self.hist(mode, size, conn, "primary", "replication_us")
        out["message"] = req["mean"] / 1000 if req else None
        out["message_p50"] = req["p50"] / 1000 if req else None
        out["server"] = srv["mean"] / 1000 if srv else None
        out["server_p50"] = srv["p50"] / 1000 if srv else None
        out["replication"] = rep["mean"] / 1000 if rep else None
        out["replication_p50"] = rep["p50"] / 1000 if rep else None
        out["replication_per_request"] = None
        if rep and req:
            out["replication_per_request"] = rep["count"] * rep["mean"] / req["count"] / 1000
        pk_ms, pk_n = 0.0, 0.0
        have = False
        for node in ("primary", "backup"):
            t = self.timing.get((mode, size, conn, node))
            h = self.hist(mode, size, conn, node, "packet_us")
            if h and t and t.get("requests"):
                have = True
                pk_ms += h["count"] * h["mean"] / t["requests"] / 1000
                pk_n += h["count"] / t["requests"]
        out["packet"] = pk_ms if have else None
        out["packets_per_request"] = pk_n if have else None
        pkt = self.hist(mode, size, conn, "primary", "packet_us")
        out["packet_us_each"] = pkt["mean"] if pkt else None
        return out


# ---------------------------------------------------------------------------- text

def key_table(r):
    """The headline ratios (printed at the end of bench/run)."""
    rows = []

    def add(comp, metric, ours, ours_p50=None, paper=None, target=None, ok=None):
        mark = "" if ok is None else (" (met)" if ok else " (NOT met)")
        rows.append(f"| {comp} | {metric} | {f(ours)} | {f(ours_p50)} | {f(paper)} | {(target or '—') + mark} |")

    def lat(a, b, size, conn, metric, tgt=None, lim=None):
        x = r.lat_ratio(a, b, size, conn)
        add(f"{a} / {b}", metric, x, r.lat_ratio(a, b, size, conn, "p50"),
            paper_ratio(a, b, size) if conn == "new" else None, tgt, None if (x is None or lim is None) else x <= lim)
    lat("duplex", "direct", "1k", "new", "latency, 1 KiB, new connection", "≤ 2", 2.0)
    lat("duplex", "direct", "1k", "keep", "latency, 1 KiB, keep-alive", "≤ 1.5", 1.5)
    for a, b in (("simplex", "direct"), ("null", "direct"), ("duplex", "simplex"), ("duplex", "null"),
                 ("duplex", "nginx-proxy"), ("duplex", "haproxy")):
        lat(a, b, "1k", "new", "latency, 1 KiB, new connection")
    for a, b in (("duplex", "nginx-proxy"), ("duplex", "haproxy")):
        lat(a, b, "1k", "keep", "latency, 1 KiB, keep-alive")
    for size in ("5k", "10k"):
        if r.lat_mean("duplex", size, "new") is not None:
            lat("duplex", "direct", size, "new", f"latency, {SIZE_LABEL[size]}, new connection")
    if r.lat_mean("duplex", "100k", "keep") is not None:  # issue 11
        lat("duplex", "direct", "100k", "keep", "latency, 100 KiB, keep-alive", "≤ 2", 2.0)
    # issue 11's targets: as fast as a plain reverse proxy; 100 KiB at 0.6 of direct
    for a, b, size, lim in (("duplex", "nginx-proxy", "1k", 1.0), ("duplex", "haproxy", "1k", None),
                            ("duplex", "direct", "1k", None), ("duplex", "direct", "100k", 0.6)):
        x = r.tput_ratio(a, b, size, 16)
        if x is None and size != "1k":
            continue
        tgt = None if lim is None else f"≥ {lim:g}"
        add(f"{a} / {b}", f"throughput req/s, {SIZE_LABEL[size]}, concurrency 16", x, None, None, tgt,
            None if (x is None or lim is None) else x >= lim)
    for size in ("1k", "100k"):
        if r.cpu_us("direct", size, "c16") is None:
            continue
        for mode in ("null", "simplex", "duplex"):
            us = [r.cpu_us(mode, size, "c16", n, "understudy") for n in ("primary", "backup")]
            if us[0] is None:
                continue
            alls = r.cpu_us(mode, size, "c16")
            who = " / ".join(f(x, 0) for x in us if x is not None)
            share = f(100 * sum(x or 0 for x in us) / alls, 0) if alls else "—"
            rows.append(f"| {mode} | CPU µs per request, {SIZE_LABEL[size]}, c=16: understudy "
                        f"{'primary / backup' if us[1] is not None else 'primary'}; its share of all "
                        f"measured CPU | {who}; {share}% | | — | — |")
        x = r.cpu_us("duplex", size, "c16")
        y = r.cpu_us("direct", size, "c16")
        add("duplex / direct", f"CPU per request (understudy + nginx + haproxy, both nodes), "
            f"{SIZE_LABEL[size]}, c=16", x / y if x and y else None)
    prof = r.res.get("profile") or {}
    for node, s in sorted((prof.get("nodes") or {}).items()):
        sp = s["split_pct"]
        rows.append(f"| profile, {node} | self time: kernel / libcrypto / libc / understudy / other (%), "
                    f"{prof['mode']} {SIZE_LABEL[prof['size']]} c={prof['conc']} | "
                    + " / ".join(f(sp[c], 0) for c in ("kernel", "libcrypto", "libc", "understudy", "other"))
                    + " | | — | — |")
    fo = r.res.get("failover") or {}
    st = (fo.get("max_stall_ms") or {})
    if st.get("n"):
        rows.append(f"| failover | longest client stall, p99 over {st['n']} runs (ms) | {f(st['p99'], 1)} | "
                    f"{f(st['p50'], 1)} | — | ≤ 150{' (met)' if st['p99'] <= 150 else ' (NOT met)'} |")
        sa = fo.get("stall_at_stop_ms") or {}
        if sa.get("n"):
            rows.append(f"| failover | longest silence across the crash, p99 (ms) | {f(sa['p99'], 1)} | "
                        f"{f(sa['p50'], 1)} | — | — |")
        fr = fo.get("first_resumed_ms") or {}
        rows.append(f"| failover | crash → first resumed byte, p99 (ms) | {f(fr.get('p99'), 1)} | "
                    f"{f(fr.get('p50'), 1)} | — | — |")
        rows.append(f"| failover | requests failed / total | {fo.get('failed')} / "
                    f"{fo.get('failed', 0) + fo.get('requests', 0)} | | — | 0 |")
    fb = r.res.get("failover_bulk") or {}
    mr = fb.get("max_request_ms") or {}
    if mr.get("n"):
        # issue 11: the longest request under 16 verifying keep-alive clients of 100 KiB, every run
        rows.append(f"| failover, bulk load | longest request (16 keep-alive × 100 KiB, verified), max over "
                    f"{mr['n']} runs (ms); median of the runs | {f(mr['max'], 1)} | {f(mr['p50'], 1)} | — | "
                    f"≤ 250{' (met)' if mr['max'] <= 250 else ' (NOT met)'} |")
        rows.append(f"| failover, bulk load | requests failed / total | {fb.get('failed')} / "
                    f"{fb.get('failed', 0) + fb.get('requests', 0)} | | — | 0 |")
    ho = r.res.get("handover") or {}
    hs = (ho.get("max_stall_ms") or {})
    if hs.get("n"):
        who = "" if ho.get("victim", "primary") == "primary" else f" ({ho['victim']} stopped)"
        # issue 9: a planned handover must stall the clients well under an unplanned failover
        tgt, met = "< failover", None
        if st.get("n"):
            met = hs["p99"] < st["p99"]
            tgt += " (met)" if met else " (NOT met)"
        rows.append(f"| handover{who} | longest client stall, p99 over {hs['n']} runs (ms) | "
                    f"{f(hs['p99'], 1)} | {f(hs['p50'], 1)} | — | {tgt} |")
        sa = ho.get("stall_at_stop_ms") or {}
        if sa.get("n"):
            rows.append(f"| handover{who} | longest silence across the SIGTERM, p99 (ms) | {f(sa['p99'], 1)} | "
                        f"{f(sa['p50'], 1)} | — | — |")
        all_ok = ho.get("failed") == 0 and ho.get("handed_over") == hs["n"]
        rows.append(f"| handover{who} | requests failed / total; runs handed over | {ho.get('failed')} / "
                    f"{ho.get('failed', 0) + ho.get('requests', 0)}; {ho.get('handed_over')} of {hs['n']} "
                    f"| | — | 0; all{' (met)' if all_ok else ' (NOT met)'} |")
    sc = r.res.get("scale") or {}
    if "held" in sc:
        hd = sc.get("held_duplex", sc["held"])
        note = "" if hd == sc["held"] else f" (nodes left duplex; {sc['held']} held in all)"
        rows.append(f"| scale | duplex connections held (target {sc['target']}) | {hd}{note} | | — | {sc['target']} |")
    head = ["| comparison | metric | ours (mean; p99 for failover, handover) | ours (median) | paper | target |",
            "|---|---|---|---|---|---|"]
    return "\n".join(head + rows)


def latency_table(r):
    lines = ["| mode | size | new conn mean | p50 | p99 | keep-alive mean | p50 | p99 |",
             "|---|---|---|---|---|---|---|---|"]
    for size in SIZE_ORDER:
        for mode in MODE_ORDER:
            n, k = r.lat.get((mode, size, "new")), r.lat.get((mode, size, "keep"))
            if not n and not k:
                continue
            cells = []
            for x in (n, k):
                cells += [f(x and x["mean"], 3), f(x and x["p50"], 3), f(x and x["p99"], 3)]
            lines.append(f"| {mode} | {SIZE_LABEL[size]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency_ratio_table(r):
    sizes = [s for s in SIZE_ORDER if any(k[1] == s for k in r.lat)]
    lines = ["| ratio (mean latency) | " + " | ".join(f"{SIZE_LABEL[s]} new | {SIZE_LABEL[s]} keep"
                                                     for s in sizes) + " | paper (new, 1/5/10 KiB) |",
             "|---|" + "---|" * (2 * len(sizes) + 1)]
    for a, b in LAT_RATIOS:
        cells = []
        for s in sizes:
            cells += [f(r.lat_ratio(a, b, s, "new")), f(r.lat_ratio(a, b, s, "keep"))]
        pap = [paper_ratio(a, b, s) for s in ("1k", "5k", "10k")]
        pap_s = " / ".join(f(x) for x in pap) if any(pap) else "—"
        lines.append(f"| {a} / {b} | " + " | ".join(cells) + f" | {pap_s} |")
    return "\n".join(lines)


def tput_table(r):
    concs = sorted({k[2] for k in r.tput})
    sizes = [s for s in SIZE_ORDER if any(k[1] == s for k in r.tput)]
    lines = ["| mode | size | " + " | ".join(f"c={c} req/s | p99 ms" for c in concs) + " |",
             "|---|---|" + "---|---|" * len(concs)]
    for size in sizes:
        for mode in MODE_ORDER:
            cells = []
            for c in concs:
                t = r.tput.get((mode, size, c))
                cells += [f(t and t["rps"], 0), f(t and t["lat_us"]["p99"] / 1000, 2)]
            lines.append(f"| {mode} | {SIZE_LABEL[size]} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio (req/s) | " + " | ".join(f"{SIZE_LABEL[s]} c={c}" for s in sizes for c in concs) + " |",
              "|---|" + "---|" * (len(sizes) * len(concs))]
    for a, b in TPUT_RATIOS:
        lines.append(f"| {a} / {b} | " + " | ".join(f(r.tput_ratio(a, b, s, c)) for s in sizes for c in concs) + " |")
    return "\n".join(lines)


def breakdown_table(r):
    lines = ["| mode | size | conn | client | message layer (request_us) | server (server_us) | "
             "replication round trip (replication_us) | packet layer per request (both nodes) | "
             "packets / request | µs / packet |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for mode in ("null", "simplex", "duplex"):
        for size in SIZE_ORDER:
            for conn in ("new", "keep"):
                if (mode, size, conn) not in r.lat:
                    continue
                b = r.breakdown(mode, size, conn)
                lines.append(f"| {mode} | {SIZE_LABEL[size]} | {conn} | {f(b['client'], 3)} | {f(b['message'], 3)} | "
                             f"{f(b['server'], 3)} | {f(b['replication'], 3)} | {f(b['packet'], 3)} | "
                             f"{f(b['packets_per_request'], 1)} | {f(b['packet_us_each'], 1)} |")
    return "\n".join(lines)


CPU_COLS = [("primary", "understudy"), ("backup", "understudy"), ("primary", "nginx"), ("backup", "nginx"),
            ("primary", "haproxy")]


def cpu_table(r, kind="throughput"):
    """CPU µs per request of each process group at every point of ``kind``."""
    points = sorted({(m, s, ld) for (k, m, s, ld, _, _) in r.cpu if k == kind},
                    key=lambda p: (SIZE_ORDER.index(p[1]), p[2], MODE_ORDER.index(p[0])))
    lines = ["| mode | size | load | " + " | ".join(f"{ro} {n}" for n, ro in CPU_COLS) +
             " | all | understudy share | primary understudy busy, system part |",
             "|---|---|---|" + "---|" * (len(CPU_COLS) + 3)]
    for mode, size, load in points:
        cells = [f(r.cpu_us(mode, size, load, n, ro, kind), 0) for n, ro in CPU_COLS]
        alls = r.cpu_us(mode, size, load, kind=kind)
        daemon = r.cpu_us(mode, size, load, role="understudy", kind=kind)
        c = r.cpu.get((kind, mode, size, load, "primary", "understudy"))
        busy = "—"
        if c and c["busy_pct"] is not None:
            tot = c["user_s"] + c["sys_s"]
            busy = f"{c['busy_pct']:.0f}% of a CPU, {f(100 * c['sys_s'] / tot if tot else None, 0)}% system"
        share = f(100 * daemon / alls, 0) + "%" if daemon and alls else "—"
        lines.append(f"| {mode} | {SIZE_LABEL[size]} | {load} | " + " | ".join(cells) +
                     f" | {f(alls, 0)} | {share} | {busy} |")
    return "\n".join(lines)


def profile_text(r):
    prof = r.res.get("profile")
    if not prof:
        return "Not profiled in this run (`bench/run --profile`)."
    if prof.get("skipped"):
        return f"Profile skipped: {prof['skipped']}"
    classes = ("kernel", "libcrypto", "libc", "understudy", "other")
    out = [f"`perf record --call-graph {prof['callgraph']}` on each daemon during one extra point: "
           f"{prof['mode']}, {SIZE_LABEL[prof['size']]} replies, wrk -c{prof['conc']} for "
           f"{prof['seconds']} s ({f(prof.get('rps'), 0)} req/s under perf). Self time (the sampled "
           "frame) by DSO:", "",
           "| node | samples | " + " | ".join(classes) + " |", "|---|---|" + "---|" * len(classes)]
    for node, s in sorted(prof["nodes"].items()):
        out.append(f"| {node} | {s['samples']} | " +
                   " | ".join(f(s["split_pct"][c], 1) + "%" for c in classes) + " |")
    for node, s in sorted(prof["nodes"].items()):
        out += ["", f"{node}, top 10 symbols by self time (all 25: profile/{node}-summary.txt; flame graph "
                f"input: profile/{node}.folded):", "", "| % | symbol | DSO |", "|---|---|---|"]
        out += [f"| {t['pct']:.1f} | `{t['symbol']}` | {t['dso']} |" for t in s["top"][:10]]
    return "\n".join(out)


def table4(r):
    b = r.breakdown("duplex", "1k", "new")
    lines = ["| component | ours mean (ms) | ours median (ms) | paper Avg (ms) | paper Mean (ms) |",
             "|---|---|---|---|---|",
             f"| Client (whole request, measured by the client) | {f(b['client'], 3)} | {f(b['client_p50'], 3)} | "
             f"{PAPER_T4['client'][0]} | {PAPER_T4['client'][1]} |",
             f"| Packet layer (raw proxy): its own processing, all packets of a request, both nodes | "
             f"{f(b['packet'], 3)} | — | {PAPER_T4['raw'][0]} | {PAPER_T4['raw'][1]} |",
             f"| Message layer (TCP proxy): first request byte in → last reply byte out (primary) | "
             f"{f(b['message'], 3)} | {f(b['message_p50'], 3)} | {PAPER_T4['tcp'][0]} | {PAPER_T4['tcp'][1]} |",
             f"| Replication round trip: Reply frame → ReplyAck (primary), per frame | "
             f"{f(b['replication'], 3)} | {f(b['replication_p50'], 3)} | — | — |",
             f"| Server: first request byte to server → first reply byte back | "
             f"{f(b['server'], 3)} | {f(b['server_p50'], 3)} | {PAPER_T4['server'][0]} | {PAPER_T4['server'][1]} |"]
    return "\n".join(lines)


def failover_text(r, scenario="failover"):
    """The failover or handover section: the same load and measures, a crash or a SIGTERM."""
    fo = r.res.get(scenario) or {}
    if not fo.get("runs"):
        return f"(no {scenario} runs)"
    victim = fo.get("victim", "primary")
    survivor = "backup" if victim == "primary" else "primary"
    if fo.get("planned"):
        ev = "SIGTERM"
        how = (f"SIGTERM to the {victim}'s daemon in duplex (a planned handover); the {survivor} took "
               f"over on the handover (its log says `handed over`) in {fo.get('handed_over')} of "
               f"{len(fo['runs'])} runs, the others on the heartbeat timeout.")
    else:
        ev = "crash"
        how = f"crash = the {victim}'s eth0 down, then SIGKILL."
    lines = [f"Load: {len(fo['mix'])} clients ({', '.join(fo['mix'])}), each one request every "
             f"{fo['interval_ms']} ms or back-to-back if slower; heartbeat {fo['heartbeat']['interval_ms']}/"
             f"{fo['heartbeat']['timeout_ms']} ms; {how}", "",
             "| metric (ms) | n | mean | p50 | p99 | max |", "|---|---|---|---|---|---|"]
    for key, name in (("first_resumed_ms", f"{ev} → first resumed byte, any client"),
                      ("all_resumed_ms", f"{ev} → every client received a byte again"),
                      ("max_stall_ms", "longest stall any client saw (per run)"),
                      ("stall_at_stop_ms", f"  … of it, the longest silence across the {ev} (until the "
                                           f"{survivor} reported simplex)"),
                      ("max_stall_keep_ms", "  … keep-alive clients"),
                      ("max_stall_new_ms", "  … new-connection clients"),
                      ("max_request_ms", "longest request, send to last byte (per run)")):
        s = fo.get(key) or {}
        lines.append(f"| {name} | {s.get('n', 0)} | {f(s.get('mean'), 1)} | {f(s.get('p50'), 1)} | "
                     f"{f(s.get('p99'), 1)} | {f(s.get('max'), 1)} |")
    lines += ["", f"Requests completed: {fo.get('requests')}; failed: {fo.get('failed')}."]
    bad = [x for x in fo["runs"] if "exception" in x]
    if bad:
        lines.append(f"Runs that broke: {len(bad)} ({'; '.join(x['exception'][:120] for x in bad[:3])}).")
    return "\n".join(lines)


def scale_text(r):
    sc = r.res.get("scale") or {}
    if "held" not in sc:
        return "(scale test did not complete)" + (f" target {sc.get('target')}" if sc else "")

    def kib(x):
        return "—" if x is None else f"{x / 1024:.1f} KiB"
    lines = [f"Target {sc['target']} connections to the advertised address in duplex, opened at most "
             f"{sc.get('rate') or 'unlimited'}/s, checked at each step. **Most held in duplex: "
             f"{sc.get('held_duplex', sc['held'])}**; held at the end: {sc['held']} (client {sc['held_client']}, "
             f"primary {sc['held_nodes'].get('primary')}, backup {sc['held_nodes'].get('backup')}), modes "
             f"{sc.get('modes_after_open')}. A new request while they were held: "
             f"{'ok' if sc.get('live_check', {}).get('ok') else 'FAILED'} "
             f"({f(sc.get('live_check', {}).get('mean_ms'), 2)} ms).", ""]
    if sc.get("steps"):
        lines += ["| connections held | primary mode | backup mode | primary RSS | backup RSS |", "|---|---|---|---|---|"]
        for st in sc["steps"]:
            rss = st["mem"]["rss_kb"]
            lines.append(f"| {st['held']} | {st['modes'].get('primary')} | {st['modes'].get('backup')} | "
                         f"{f(rss.get('primary') and rss['primary'] / 1024, 1)} MiB | "
                         f"{f(rss.get('backup') and rss['backup'] / 1024, 1)} MiB |")
        lines.append("")
    lines += ["| state | primary RSS | backup RSS | primary / conn | backup / conn | kernel TCP / conn (all namespaces) |",
              "|---|---|---|---|---|---|"]
    for state, label in (("baseline", "no connections"), ("idle", f"idle ({sc['held']} connections)"),
                         ("busy", f"busy ({SIZE_LABEL[sc['busy_reply']]} reply unread on each)")):
        m = sc.get(state)
        if not m:
            lines.append(f"| {label} | {sc.get('busy_skipped', 'not measured')} | | | | |")
            continue
        rss = m.get("rss_kb", {})
        per = (sc.get(f"{state}_bytes_per_conn") or {})
        d = per.get("daemon") or {}
        lines.append(f"| {label} | {f(rss.get('primary') and rss['primary'] / 1024, 1)} MiB | "
                     f"{f(rss.get('backup') and rss['backup'] / 1024, 1)} MiB | {kib(d.get('primary'))} | "
                     f"{kib(d.get('backup'))} | {kib(per.get('kernel_tcp_all_namespaces'))} |")
    if sc.get("modes_after_busy"):
        lines += ["", f"Modes after the busy requests: {sc['modes_after_busy']}."]
    rc = sc.get("read_client")
    if rc:
        lines += ["", f"Busy replies read back afterwards: {rc.get('ok')} correct, {rc.get('bad')} wrong."]
    return "\n".join(lines)


def report_md(r, plots):
    m = r.res["meta"]
    p = m["params"]
    out = [f"# Understudy benchmark — {m['date']} ({m['profile']})", "",
           f"Host {m['host']}: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}; understudy {m['git']}"
           f"{' (with uncommitted changes)' if m.get('git_dirty') else ''}; {m['nginx']}; {m['haproxy']}; "
           f"{m['wrk']}. Veth offloads {'off' if m.get('offloads') is False else 'on'}. "
           f"Run took {m.get('seconds')} s.", "",
           f"Latency: {p['lat_n']} requests per point (after 3 warm-up requests), timed in the client "
           f"with `time.perf_counter`. Throughput: wrk {p['wrk_seconds']} s per point, concurrency "
           f"{p['concurrency']}. Everything in one lab on one host: all processes share {m['cpus']} CPUs.", "",
           "Modes: direct = client → primary's nginx 198.18.0.11:8080; nginx-proxy = nginx reverse proxy "
           "198.18.0.11:8081 → 127.0.0.1:8080 (upstream keep-alive); haproxy = HAProxy 198.18.0.11:8082 → "
           "127.0.0.1:8080; null = one Understudy node alone (simplex: packet + message layers, no replication); "
           "duplex = both nodes (client → backup → primary); simplex = both started, backup stopped (SIGTERM).", ""]
    if r.res.get("errors"):
        out += ["## ERRORS", ""] + [f"- {e}" for e in r.res["errors"]] + [""]
    out += ["## Headline ratios (measured in this run)", "", key_table(r), "",
            "Paper ratios are from its Tables 3 and 5 (Avg column, a new connection per request).", "",
            "## Latency (ms)", "", latency_table(r), "", "### Ratios", "", latency_ratio_table(r), "",
            f"![per-request latency]({plots['latency_series.png']})", "",
            f"![latency vs reply size]({plots['latency_vs_size.png']})", "",
            "## Throughput (wrk)", "", tput_table(r), "", f"![throughput]({plots['throughput.png']})", "",
            "## Where the time goes", ""]
    if m.get("timing_available"):
        out += ["Like the paper's Table 4 (duplex, 1 KiB, a new connection per request). The daemon's own "
                "histograms (`understudy status --json` → `timing`), reset before each point:", "", table4(r), "",
                "The paper's rows are nested (each includes the ones below it). Ours: the message-layer time "
                "includes the server and replication times; the packet-layer row is only the packet layer's "
                "own processing (sum over the packets of one request on both nodes), not the time packets "
                "spend in kernels and on the wire.", "", "All points:", "", breakdown_table(r), "",
                f"![breakdown]({plots['breakdown.png']})", ""]
    else:
        out += ["The daemon under test does not report `timing` in `understudy status --json`; no breakdown.",
                "", f"![breakdown]({plots['breakdown.png']})", ""]
    out += ["### CPU per request (µs)", "",
            "CPU time (utime + stime from /proc/<pid>/stat, all threads) each node's processes spent during "
            "each wrk point, divided by the requests wrk completed. Softirq work the kernel does on another "
            "task's time is not in any column; \"busy\" is the primary daemon's CPU time over the point's "
            "wall time. Latency points: cpu.csv.", "", cpu_table(r), "",
            "### perf profile", "", profile_text(r), ""]
    out += ["## Failover", "", failover_text(r), "", f"![failover]({plots['failover.png']})", "",
            "## Failover under bulk load", "", failover_text(r, "failover_bulk"), "",
            "## Handover", "", failover_text(r, "handover"), "",
            "## Scale", "", scale_text(r), "",
            "Raw data: results.json (everything, including every latency sample), latency.csv, "
            "latency_samples.csv, throughput.csv, breakdown.csv, failover.csv, handover.csv, cpu.csv."]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- data files

def write_csvs(r, out):
    with open(os.path.join(out, "latency.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mode", "size", "bytes", "conn", "n", "mean_ms", "p50_ms", "p99_ms", "min_ms", "max_ms",
                    "ttfb_mean_ms", "errors"])
        for x in r.res["latency"]:
            w.writerow([x["mode"], x["size"], x["bytes"], x["conn"], x["n"], x["mean"], x["p50"], x["p99"],
                        x["min"], x["max"], x["ttfb_mean"], x["errors"]])
    with open(os.path.join(out, "latency_samples.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mode", "size", "conn", "i", "ms"])
        for x in r.res["latency"]:
            for i, v in enumerate(x["samples_ms"]):
                w.writerow([x["mode"], x["size"], x["conn"], i, v])
    with open(os.path.join(out, "throughput.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mode", "size", "bytes", "concurrency", "threads", "seconds", "requests", "rps", "mib_s",
                    "lat_mean_us", "lat_p50_us", "lat_p99_us", "lat_max_us", "errors"])
        for x in r.res["throughput"]:
            lu = x["lat_us"]
            w.writerow([x["mode"], x["size"], x["bytes"], x["conc"], x["threads"], x["seconds"], x["requests"],
                        round(x["rps"], 1), round(x["mib_s"], 2), lu["mean"], lu["p50"], lu["p99"], lu["max"],
                        sum(x["errors"].values())])
    with open(os.path.join(out, "breakdown.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mode", "size", "conn", "node", "requests", "hist", "count", "mean_us", "p50_us", "p99_us",
                    "max_us"])
        for t in r.res["timing"]:
            for name, h in sorted((t.get("timing") or {}).items()):
                w.writerow([t["mode"], t["size"], t["conn"], t["node"], t["requests"], name, h.get("count"),
                            h.get("mean"), h.get("p50"), h.get("p99"), h.get("max")])
    with open(os.path.join(out, "cpu.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "mode", "size", "load", "node", "process", "processes", "requests", "seconds",
                    "user_s", "sys_s", "cpu_us_per_request", "busy_pct"])
        for c in r.res.get("cpu", []) + (r.res.get("profile") or {}).get("cpu", []):
            w.writerow([c["kind"], c["mode"], c["size"], c["load"], c["node"], c["role"], c["processes"],
                        c["requests"], round(c["seconds"], 3), round(c["user_s"], 3), round(c["sys_s"], 3),
                        None if c["us_per_req"] is None else round(c["us_per_req"], 1),
                        None if c["busy_pct"] is None else round(c["busy_pct"], 1)])
    with open(os.path.join(out, "failover.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "first_resumed_ms", "all_resumed_ms", "max_stall_ms", "max_stall_keep_ms",
                    "max_stall_new_ms", "status_simplex_ms", "requests", "failed", "error"])
        for x in (r.res.get("failover") or {}).get("runs", []):
            w.writerow([x["run"], x.get("first_resumed_ms"), x.get("all_resumed_ms"), x.get("max_stall_ms"),
                        x.get("max_stall_keep_ms"), x.get("max_stall_new_ms"), x.get("status_simplex_ms"),
                        x.get("requests"), x.get("failed"), x.get("exception", "")])
    with open(os.path.join(out, "handover.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "victim", "handed_over", "exit_code", "first_resumed_ms", "all_resumed_ms",
                    "max_stall_ms", "stall_at_stop_ms", "max_stall_keep_ms", "max_stall_new_ms", "status_simplex_ms", "requests",
                    "failed", "error"])
        ho = r.res.get("handover") or {}
        for x in ho.get("runs", []):
            w.writerow([x["run"], ho.get("victim"), x.get("handed_over"), x.get("exit_code"),
                        x.get("first_resumed_ms"), x.get("all_resumed_ms"), x.get("max_stall_ms"),
                        x.get("stall_at_stop_ms"), x.get("max_stall_keep_ms"), x.get("max_stall_new_ms"),
                        x.get("status_simplex_ms"), x.get("requests"), x.get("failed"), x.get("exception", "")])


# ---------------------------------------------------------------------------- plots

def plots(r, out):
    import matplotlib  # only the plots need it: --render and the tests of the rest do not
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = {}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        names[name] = name

    # Figure 2 style: per-request latency, 1 KiB
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, conn, title in ((axes[0], "new", "new connection per request"), (axes[1], "keep", "keep-alive")):
        for mode in MODE_ORDER:
            x = r.lat.get((mode, "1k", conn))
            if x and x["samples_ms"]:
                ax.plot(range(len(x["samples_ms"])), x["samples_ms"], lw=0.8, color=COLORS[mode],
                        label=f"{mode} (mean {x['mean']:.2f})")
        ax.set_title(f"Request latency, 1 KiB replies, {title}")
        ax.set_xlabel("request #")
        ax.set_ylabel("ms")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    save(fig, "latency_series.png")

    # Figures 4/5 style: latency vs reply size (+ server time measured by the daemon)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, conn, title in ((axes[0], "new", "new connection per request"), (axes[1], "keep", "keep-alive")):
        for mode in MODE_ORDER:
            pts = [(r.lat[(mode, s, conn)]["bytes"] / 1024, r.lat[(mode, s, conn)]["mean"])
                   for s in SIZE_ORDER if (mode, s, conn) in r.lat and r.lat[(mode, s, conn)]["n"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", color=COLORS[mode], label=mode)
        srv = [(r.lat[("duplex", s, conn)]["bytes"] / 1024, r.breakdown("duplex", s, conn)["server"])
               for s in SIZE_ORDER if ("duplex", s, conn) in r.lat]
        srv = [p for p in srv if p[1] is not None]
        if srv:
            ax.plot(*zip(*srv), ls=":", marker="x", color="gray", label="server time (duplex, daemon)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"Mean latency vs reply size, {title}")
        ax.set_xlabel("reply size (KiB)")
        ax.set_ylabel("ms")
        ax.legend(fontsize=8)
    save(fig, "latency_vs_size.png")

    # Throughput vs concurrency, one panel per size
    sizes = [s for s in SIZE_ORDER if any(k[1] == s for k in r.tput)] or ["1k"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for mode in MODE_ORDER:
            pts = sorted((c, t["rps"]) for (m, s, c), t in r.tput.items() if m == mode and s == size)
            if pts:
                ax.plot(*zip(*pts), marker="o", color=COLORS[mode], label=mode)
        ax.set_xscale("log", base=2)
        ax.set_title(f"Throughput, {SIZE_LABEL[size]}")
        ax.set_xlabel("concurrent connections (wrk -c)")
        ax.set_ylabel("requests/s")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    save(fig, "throughput.png")

    # Figure 3 style: where the time goes (duplex, per size)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    comps = [("client", "client (total)"), ("message", "message layer"), ("server", "server"),
             ("replication_per_request", "replication RTT (per request)"), ("packet", "packet layer (own CPU)")]
    for ax, conn, title in ((axes[0], "new", "new connection"), (axes[1], "keep", "keep-alive")):
        szs = [s for s in SIZE_ORDER if ("duplex", s, conn) in r.lat]
        w = 0.8 / len(comps)
        for j, (key, label) in enumerate(comps):
            vals = [r.breakdown("duplex", s, conn)[key] or 0 for s in szs]
            ax.bar([i + j * w for i in range(len(szs))], vals, width=w, label=label)
        ax.set_xticks([i + 0.4 - w / 2 for i in range(len(szs))])
        ax.set_xticklabels([SIZE_LABEL[s] for s in szs])
        ax.set_yscale("log")
        ax.set_ylabel("ms per request (mean)")
        ax.set_title(f"Duplex: where the time goes, {title}")
        ax.legend(fontsize=8)
    save(fig, "breakdown.png")

    # Failover: every read of every client around the crash (first run), and stalls per run
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    runs = [x for x in (r.res.get("failover") or {}).get("runs", []) if "slots" in x]
    if runs:
        for i, sl in enumerate(runs[0]["slots"]):
            axes[0].scatter(sl["reads_rel_ms"], [i] * len(sl["reads_rel_ms"]), s=4,
                            color="#d62728" if sl["kind"] == "new" else "#1f77b4")
        axes[0].axvline(0, color="black", lw=1)
        axes[0].set_yticks(range(len(runs[0]["slots"])))
        axes[0].set_yticklabels([f"{sl['kind']} {os.path.basename(sl['path'])}" for sl in runs[0]["slots"]],
                                fontsize=7)
        axes[0].set_xlabel("ms since the crash (run 0)")
        axes[0].set_title("Every read of every client around the crash")
        xs = range(len(runs))
        axes[1].plot(xs, [x["max_stall_ms"] for x in runs], marker="o", label="longest stall, any client")
        axes[1].plot(xs, [x.get("first_resumed_ms") or 0 for x in runs], marker="x", label="crash → first resumed byte")
        axes[1].axhline(150, color="gray", ls=":", label="150 ms target")
        axes[1].set_xlabel("run")
        axes[1].set_ylabel("ms")
        axes[1].set_ylim(bottom=0)
        axes[1].set_title("Failover per run")
        axes[1].legend(fontsize=8)
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no failover data", ha="center", va="center")
    save(fig, "failover.png")
    return names


def write_all(res, out):
    r = R(res)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    write_csvs(r, out)
    names = plots(r, out)
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write(report_md(r, names))
    return "Headline ratios (one run, one lab):\n\n" + key_table(r)

"""Where the benchmark's CPU goes: CPU time per process from /proc, and `perf record` of a daemon
turned into folded stacks (for a flame graph) and a text summary.

CPU time is utime + stime of /proc/<pid>/stat (all threads of the process), read before and after a
measured window. It misses kernel work that runs in softirq context on another task's time (e.g. a
veth or TUN receive that the kernel finishes for whoever is on the CPU), so the per-process numbers
are a floor and the totals do not add up to the machine's busy time.
"""
import os
import re
import select
import subprocess
from collections import Counter

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """(user seconds, system seconds) of a live process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: the fields after it start at the last ')'
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[11]) / TICK, int(rest[12]) / TICK  # fields 14 and 15: utime, stime


def ns_comm_pids(pids, comm):
    """The processes of ``pids`` whose name is ``comm``."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as fh:
                if fh.read().strip() == comm:
                    out.append(pid)
        except OSError:
            pass
    return sorted(out)


def snapshot(groups):
    """{key: [pid]} -> {key: {pid: (user, sys)}}"""
    return {k: {p: c for p in pids if (c := proc_cpu(p)) is not None} for k, pids in groups.items()}


def delta(before, after):
    """{key: (user s, sys s)} spent between two snapshots; a process that started in between
    counts from zero, one that ended in between is lost (its time is not in /proc any more)."""
    out = {}
    for k, now in after.items():
        was = before.get(k, {})
        u = sum(c[0] - was.get(p, (0.0, 0.0))[0] for p, c in now.items())
        s = sum(c[1] - was.get(p, (0.0, 0.0))[1] for p, c in now.items())
        out[k] = (u, s)
    return out


# ---------------------------------------------------------------------------- perf

class PerfRecord:
    """``perf record -g`` on some pids, started disabled and enabled through its control pipe, so
    the samples cover exactly the window between ``start()`` and ``stop()``."""

    def __init__(self, pids, out, freq=999, callgraph="dwarf"):
        self.out = out
        cr, self._ctl = os.pipe()
        self._ack, aw = os.pipe()
        self.err_path = out + ".log"
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                ["perf", "record", "-q", "--no-buildid-cache", "-F", str(freq), "--call-graph", callgraph,
                 "-D", "-1", "-p", ",".join(map(str, pids)), "-o", out, "--control", f"fd:{cr},{aw}"],
                pass_fds=(cr, aw), stdout=subprocess.DEVNULL, stderr=err)
        os.close(cr)
        os.close(aw)

    def _command(self, cmd, timeout=30):
        try:
            os.write(self._ctl, cmd.encode() + b"\n")
        except BrokenPipeError:
            raise RuntimeError(f"perf exited: {self.log()}") from None
        if not select.select([self._ack], [], [], timeout)[0]:
            raise RuntimeError(f"perf did not acknowledge '{cmd}' in {timeout} s: {self.log()}")
        if not os.read(self._ack, 64).startswith(b"ack"):
            raise RuntimeError(f"perf refused '{cmd}': {self.log()}")

    def start(self):
        self._command("enable")

    def stop(self):
        """Stop recording and wait for perf to write its file; raises if it failed."""
        try:
            if self.proc.poll() is None:
                self._command("stop")
            rc = self.proc.wait(timeout=120)
        finally:
            self.close()
        if rc != 0 or not os.path.isfile(self.out):
            raise RuntimeError(f"perf record exited {rc}: {self.log()}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._ctl, self._ack):
            try:
                os.close(fd)
            except OSError:
                pass
        self._ctl = self._ack = -1

    def log(self):
        try:
            with open(self.err_path) as fh:
                return fh.read()[-500:].strip()
        except OSError:
            return ""


def perf_script(data):
    """The text of `perf script` for ``data`` (comm, tid, and per frame address, symbol, DSO).
    --no-inline: perf's inline frames have no DSO (it names them "inlined"), and some it reports
    are libc's own functions, which would then count in the caller's DSO."""
    cp = subprocess.run(["perf", "script", "--no-inline", "-i", data, "-F", "comm,tid,ip,sym,dso"],
                        capture_output=True, timeout=600)
    if cp.returncode != 0:
        raise RuntimeError(f"perf script: {cp.stderr.decode(errors='replace')[-400:]}")
    return cp.stdout.decode(errors="replace")


_HEAD = re.compile(r"^(\S.*?)\s+\d+(?:/\d+)?\s*$")
# the DSO is the last parenthesized group: C++ symbols hold " (" themselves
_FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*)\s+\(([^()]*)\)$")


def samples(text):
    """The samples of `perf script` output: [(comm, [(symbol, dso), ...] leaf first)].

    >>> s = samples('''understudy 41
    ... \\tffffffff8136 copy_user_generic ([kernel.kallsyms])
    ... \\t  1a2b3 __libc_write (/usr/lib/x86_64-linux-gnu/libc.so.6)
    ... \\t  4455 [unknown] (/tmp/x/understudy)
    ...
    ... understudy 41
    ... \\t  99 sha256_block_data_order_avx2 (/usr/lib/x86_64-linux-gnu/libcrypto.so.3)
    ... \\t  88 std::function<void (int)>::operator()(int) const (/tmp/x/understudy)
    ... ''')
    >>> s[0][1][:2]
    [('copy_user_generic', '[kernel.kallsyms]'), ('__libc_write', '/usr/lib/x86_64-linux-gnu/libc.so.6')]
    >>> len(s), s[1][0]
    (2, 'understudy')
    >>> s[1][1][1]
    ('std::function<void (int)>::operator()(int) const', '/tmp/x/understudy')
    """
    out = []
    cur = None
    for line in text.splitlines():
        if not line.strip():
            cur = None
            continue
        m = _FRAME.match(line)
        if m and cur is not None:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            cur[1].append((sym, m.group(2)))
            continue
        h = _HEAD.match(line)
        if h:
            cur = (h.group(1), [])
            out.append(cur)
    return [s for s in out if s[1]]


def frame_name(sym, dso):
    """A frame for a flame graph: the symbol, or the DSO's name if perf did not know the symbol."""
    if sym != "[unknown]" or dso.startswith("["):
        return sym
    return f"[{os.path.basename(dso)}]"


def collapse(smp):
    """Folded stacks (the flame graph input format): {'comm;root;...;leaf': samples}.

    >>> collapse([("us", [("write", "libc.so.6"), ("main", "us")]),
    ...           ("us", [("write", "libc.so.6"), ("main", "us")]),
    ...           ("us", [("[unknown]", "/lib/libcrypto.so.3")])])
    Counter({'us;main;write': 2, 'us;[libcrypto.so.3]': 1})
    """
    return Counter(";".join([comm] + [frame_name(s, d) for s, d in reversed(frames)])
                   for comm, frames in smp)


def dso_class(dso, binary_name="understudy"):
    """kernel, libcrypto, libc, understudy or other.

    >>> [dso_class(d) for d in ("[kernel.kallsyms]", "[veth]", "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ...                         "/lib/libcrypto.so.3", "/tmp/usbench-1/understudy", "[unknown]")]
    ['kernel', 'kernel', 'libc', 'libcrypto', 'understudy', 'other']
    """
    base = os.path.basename(dso)
    if dso.startswith("[kernel") or (dso.startswith("[") and dso not in ("[unknown]", "[vdso]", "[vsyscall]")):
        return "kernel"  # the kernel or one of its modules ([tun], [veth], ...)
    if base.startswith("libcrypto"):
        return "libcrypto"
    if base.startswith("libc.so") or base.startswith("libc-"):
        return "libc"
    if base == binary_name:
        return "understudy"
    return "other"


DSO_CLASSES = ("kernel", "libcrypto", "libc", "understudy", "other")


def summarize(smp, top=25):
    """Self time (the leaf frame of each sample): the split by DSO class in percent and the
    ``top`` symbols.

    >>> s = summarize([("us", [("write", "libc.so.6")]), ("us", [("f", "[kernel.kallsyms]")]),
    ...                ("us", [("f", "[kernel.kallsyms]")]), ("us", [("g", "/x/understudy")])], top=1)
    >>> s["split_pct"]["kernel"], s["split_pct"]["libc"], s["top"]
    (50.0, 25.0, [{'symbol': 'f', 'dso': 'kernel.kallsyms', 'samples': 2, 'pct': 50.0}])
    """
    n = len(smp)
    split = Counter(dso_class(frames[0][1]) for _, frames in smp)
    syms = Counter((frames[0][0], frames[0][1]) for _, frames in smp)
    return {"samples": n,
            "split_pct": {c: (100.0 * split[c] / n if n else 0.0) for c in DSO_CLASSES},
            "top": [{"symbol": s, "dso": os.path.basename(d).strip("[]"), "samples": k, "pct": 100.0 * k / n}
                    for (s, d), k in syms.most_common(top)]}


def summary_text(node, summ, point=""):
    lines = [f"perf profile of the {node}'s understudy daemon{point}: {summ['samples']} samples",
             "", "self time by DSO: " + ", ".join(f"{c} {summ['split_pct'][c]:.1f}%" for c in DSO_CLASSES),
             "", f"top {len(summ['top'])} symbols by self time:", f"{'%':>6}  {'samples':>7}  symbol (dso)"]
    lines += [f"{t['pct']:6.2f}  {t['samples']:7d}  {t['symbol']} ({t['dso']})" for t in summ["top"]]
    return "\n".join(lines) + "\n"


def write_profile(data, outdir, node, point=""):
    """perf.data -> <outdir>/<node>.folded and <node>-summary.txt; returns the summary."""
    smp = samples(perf_script(data))
    with open(os.path.join(outdir, f"{node}.folded"), "w") as fh:
        for stack, k in sorted(collapse(smp).items()):
            fh.write(f"{stack} {k}\n")
    summ = summarize(smp)
    with open(os.path.join(outdir, f"{node}-summary.txt"), "w") as fh:
        fh.write(summary_text(node, summ, point))
    return summ

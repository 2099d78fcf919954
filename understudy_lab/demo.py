"""The Understudy demo: two nodes in duplex, an unmodified client downloading 64 MiB while a
second client sends a steady stream of keep-alive requests; the primary dies mid-reply (interface
down, SIGKILL); every reply must still arrive intact on its original connection.

Run through scripts/demo.sh (installs and builds first), as root.
"""
import json
import os
import subprocess
import sys
import time

from understudy_lab import lab as ul

BINARY = os.environ.get("UNDERSTUDY_BINARY", os.path.join(ul.REPO_ROOT, "build", "understudy"))
URL = f"http://{ul.ADVERTISED_IP}"
BIG = "/f/64m.bin"
STREAM = ["/f/1k.bin", "/f/5k.bin", "/f/10k.bin", "/f/100k.bin"] * 40


def say(msg=""):
    print(msg, flush=True)


def client(lab, args):
    return subprocess.Popen(["ip", "netns", "exec", lab.ns("client")] + ul.python_module("understudy_lab.timed_fetch") + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def main():
    if os.geteuid() != 0:
        sys.exit("demo: run as root (it creates network namespaces)")
    with ul.Lab(binary=BINARY) as lab:
        say(f"lab {lab.prefix}: client 198.18.0.2, primary 198.18.0.11, backup 198.18.0.12, "
            f"advertised {ul.ADVERTISED}; nginx on each node")
        lab.keygen()
        for node in ("primary", "backup"):
            lab.write_config(node)
            lab.start_node(node)
        lab.wait_status("primary", mode="duplex")
        lab.wait_status("backup", mode="duplex", front=True)
        say("both nodes up: duplex (the backup owns the address, the primary serves)")

        ready = os.path.join(lab.workdir, "demo-ready")
        big = client(lab, [URL + BIG, "--rate", str(16 << 20), "--ready", ready,
                           "--ready-after", str(16 << 20), "--timeout", "60"])
        stream = client(lab, [URL + STREAM[0], *STREAM[1:], "--interval-ms", "20", "--timeout", "60"])
        say(f"client 1: GET {BIG} (64 MiB, read at 16 MiB/s); "
            f"client 2: {len(STREAM)} keep-alive GETs, one every 20 ms")
        ul.wait_for(lambda: os.path.exists(ready), 30, "16 MiB of the download")
        t_crash = time.monotonic()
        lab.crash("primary")
        say("after 16 MiB: primary CRASHED (eth0 down, daemon SIGKILLed)")
        st = lab.wait_status("backup", mode="simplex", front=True, failovers=1)
        say(f"backup took over in {1000 * (time.monotonic() - t_crash):.0f} ms (heartbeat timeout 100 ms)")

        ok = True
        rows = []
        for name, p in (("client 1", big), ("client 2", stream)):
            out, err = p.communicate(timeout=120)
            res = json.loads(out.decode() or "{}")
            if not res.get("ok"):
                ok = False
                say(f"{name}: FAILED: {res.get('error') or err.decode()}")
                continue
            for r in res["results"]:
                size, sha = lab.manifest[r["path"]]
                good = r["status"] == 200 and r["size"] == size and r["sha256"] == sha
                ok &= good
                rows.append((name, r, good))
        say("")
        say("report")
        say(f"  {'client':9} {'path':12} {'replies':>7} {'bytes':>10} {'sha256 ok':>9} "
            f"{'longest stall':>13} {'slowest reply':>13}")
        for name in ("client 1", "client 2"):
            for path in dict.fromkeys(r["path"] for n, r, _ in rows if n == name):
                rs = [(r, g) for n, r, g in rows if n == name and r["path"] == path]
                say(f"  {name:9} {path:12} {len(rs):>7} {sum(r['size'] for r, _ in rs):>10} "
                    f"{'yes' if all(g for _, g in rs) else 'NO':>9} "
                    f"{max(r['max_gap_ms'] for r, _ in rs):>10.0f} ms "
                    f"{max(r['total_ms'] for r, _ in rs):>10.0f} ms")
        final = lab.node_status("backup") or st
        say(f"  backup after takeover: mode {final['mode']}, failovers {final['failovers']}, "
            f"replies regenerated {final['message']['regenerated']}, "
            f"kept segments resent {final['packet']['retained_sent']}")
        say("  (longest stall: the longest wait between two reads within one reply; slowest reply:")
        say("   request sent to last byte, for the reply that took longest)")
        say("")
        say("RESULT: every reply arrived intact on its original connection" if ok
            else "RESULT: some replies were lost or wrong")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

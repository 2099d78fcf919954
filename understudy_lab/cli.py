"""Command-line front end of the Understudy namespace lab: lab/lab runs this (see lab/README.md)."""

import argparse
import json
import os
import sys

from understudy_lab import lab as ul


def resolve(prefix):
    prefix = prefix or os.environ.get("LAB_PREFIX")
    if prefix:
        if not ul.read_state(prefix):
            sys.exit(f"lab: no lab {prefix} (state dir {ul.STATE_DIR})")
        return ul.Lab.attach(prefix)
    states = ul.list_states()
    if len(states) == 1:
        return ul.Lab.attach(states[0]["prefix"])
    if not states:
        sys.exit("lab: no lab is up (run: lab up)")
    sys.exit("lab: several labs are up, pick one with --prefix: " + " ".join(s["prefix"] for s in states))


def cmd_up(a):
    lab = ul.Lab(prefix=a.prefix, workdir=a.workdir, binary=a.binary, lan_listen=a.lan_listen,
                 keep_workdir=True, persistent=True)
    try:
        lab.up()
    except BaseException:
        lab.down()
        raise
    lab.detach()
    print(lab.prefix)
    print(lab.workdir)
    return 0


def cmd_down(a):
    if a.all:
        for p in ul.all_lab_prefixes():
            ul.cleanup_stale(p)
            print(f"removed {p}")
        return 0
    lab = resolve(a.prefix)
    ul.cleanup_stale(lab.prefix)
    print(f"removed {lab.prefix} (workdir {lab.workdir} kept)" if not lab.owns_workdir or lab.keep_workdir
          else f"removed {lab.prefix}")
    return 0


def cmd_crash(a):
    lab = resolve(a.prefix)
    lab.crash(a.node)
    print(f"{a.node}: eth0 down, daemon killed")
    return 0


def cmd_link_up(a):
    resolve(a.prefix).link_up(a.node)
    return 0


def cmd_start(a):
    lab = resolve(a.prefix)
    if not os.path.exists(lab.key_path):
        lab.keygen()
    if not os.path.exists(lab.config_path(a.node)):
        lab.write_config(a.node)
    p = lab.start_node(a.node)
    print(f"{a.node}: daemon pid {p.pid}, log {os.path.join(lab.node_dir(a.node), 'understudy.log')}")
    return 0


def cmd_stop(a):
    lab = resolve(a.prefix)
    rc = lab.stop_node(a.node)
    print(f"{a.node}: daemon stopped ({rc})")
    return 0


def cmd_exec(a):
    lab = resolve(a.prefix)
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        sys.exit("lab exec: no command (lab exec NODE -- CMD...)")
    node = a.node
    os.execvp("ip", ["ip", "netns", "exec", lab.ns(node)] + cmd)


def _comm(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:100]
    except OSError:
        return "?"


def cmd_status(a):
    prefixes = [a.prefix] if a.prefix else ul.all_lab_prefixes()
    if not prefixes:
        print("no lab is up")
        return 0
    out = []
    for p in prefixes:
        st = ul.read_state(p) or {"prefix": p, "workdir": None}
        entry = {"prefix": p, "workdir": st.get("workdir"), "persistent": st.get("persistent"),
                 "namespaces": {}}
        present = set(ul.list_netns())
        for node in ("lan",) + ul.NODES:
            ns = f"{p}-{node}"
            if ns not in present:
                entry["namespaces"][node] = None
                continue
            entry["namespaces"][node] = {"pids": {str(pid): _comm(pid) for pid in ul.ns_pids(ns)}}
        if st.get("workdir"):
            lab = ul.Lab.attach(p) if ul.read_state(p) else None
            if lab and os.path.exists(lab.binary):
                for node in ul.SERVER_NODES:
                    if entry["namespaces"].get(node) and os.path.exists(lab.config_path(node)):
                        entry["namespaces"][node]["understudy"] = lab.node_status(node)
        out.append(entry)
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    for e in out:
        print(f"lab {e['prefix']}  workdir {e['workdir']}")
        for node, info in e["namespaces"].items():
            if info is None:
                print(f"  {node:8} (namespace missing)")
                continue
            procs = ", ".join(f"{pid}:{c.split(' ')[0].rsplit('/', 1)[-1]}" for pid, c in info["pids"].items())
            print(f"  {node:8} {procs or '-'}")
            if "understudy" in info:
                print(f"           status: {json.dumps(info['understudy'])}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="lab", description="Understudy network-namespace lab")
    ap.add_argument("--prefix", help="lab prefix (us<4 hex>); default: $LAB_PREFIX or the only lab")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("up", help="create a lab; prints prefix and workdir")
    p.add_argument("--workdir")
    p.add_argument("--binary", default="build/understudy")
    p.add_argument("--lan-listen", action="store_true", help="nginx also listens on <node ip>:8080")
    p.set_defaults(fn=cmd_up)

    p = sub.add_parser("down", help="remove a lab (or --all labs, by name prefix)")
    p.add_argument("--all", action="store_true")
    p.set_defaults(fn=cmd_down)

    for name, fn, hlp in (("crash", cmd_crash, "eth0 down, then SIGKILL the daemon"),
                          ("link-up", cmd_link_up, "bring eth0 back up"),
                          ("start", cmd_start, "start the daemon (keygen + config if missing)"),
                          ("stop", cmd_stop, "SIGTERM the daemon")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("node", choices=ul.SERVER_NODES)
        p.set_defaults(fn=fn)

    p = sub.add_parser("exec", help="run a command in a namespace: lab exec NODE -- CMD...")
    p.add_argument("node", choices=("lan",) + ul.NODES)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_exec)

    p = sub.add_parser("status", help="labs, their namespaces, processes, daemon status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)

    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except ul.LabError as e:
        sys.exit(f"lab: {e}")


if __name__ == "__main__":
    sys.exit(main())

"""The lab's network: namespaces, the bridge, veths, addresses, nftables loss rules, and the
state files by which labs of other processes are found and stale or orphaned ones removed.

All names carry a per-lab prefix ``us<4 hex>``; nothing links to the root namespace.
"""

import dataclasses
import json
import os
import re
import secrets
import shutil
import signal

from understudy_lab.common import (NODE_IPS, NODES, PREFIXLEN, LabError, kill_pids, pid_alive,
                                   sh, wait_for)

STATE_DIR = os.environ.get("UNDERSTUDY_LAB_STATE_DIR", "/run/understudy-lab")
PREFIX_RE = re.compile(r"^us[0-9a-f]{4}$")
NS_RE = re.compile(r"^(us[0-9a-f]{4})-(lan|client|primary|backup)$")
MTU = 1500
OFFLOADS = ["tx", "off", "tso", "off", "gso", "off", "sg", "off", "gro", "off"]
NFT_TABLE = "understudy_lab"
NFT_CHAIN = "loss"  # 'fwd' is reserved in nft


def ns_pids(ns):
    cp = sh(["ip", "netns", "pids", ns], check=False)
    if cp.returncode != 0:
        return []
    return [int(x) for x in cp.stdout.split()]


def list_netns():
    cp = sh(["ip", "-j", "netns", "list"], check=False)
    out = cp.stdout.decode().strip()
    if cp.returncode != 0 or not out:
        return []
    return [e["name"] for e in json.loads(out)]


def kill_namespace_processes(ns, timeout=10):
    """SIGTERM then SIGKILL every process in ``ns``; wait until none is left."""
    pids = ns_pids(ns)
    if not pids:
        return
    kill_pids(pids, signal.SIGTERM)
    try:
        wait_for(lambda: not ns_pids(ns), 2, f"processes in {ns} to exit after SIGTERM")
        return
    except TimeoutError:
        pass
    kill_pids(ns_pids(ns), signal.SIGKILL)
    wait_for(lambda: not ns_pids(ns), timeout, f"processes in {ns} to exit after SIGKILL",
             details=lambda: f"left: {ns_pids(ns)}")


# --------------------------------------------------------------------------- state files

def state_path(prefix):
    return os.path.join(STATE_DIR, f"{prefix}.json")


def read_state(prefix):
    try:
        with open(state_path(prefix)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_state(prefix, st):
    os.makedirs(STATE_DIR, exist_ok=True)
    tmp = state_path(prefix) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f, indent=1)
    os.replace(tmp, state_path(prefix))


def list_states():
    try:
        names = os.listdir(STATE_DIR)
    except FileNotFoundError:
        return []
    out = []
    for n in sorted(names):
        if n.endswith(".json") and PREFIX_RE.match(n[:-5]):
            st = read_state(n[:-5])
            if st:
                out.append(st)
    return out


def all_lab_prefixes():
    """Prefixes of every lab on this machine (from namespaces and state files)."""
    p = {m.group(1) for m in (NS_RE.match(n) for n in list_netns()) if m}
    p |= {st["prefix"] for st in list_states()}
    return sorted(p)


def fresh_prefix():
    existing = set(all_lab_prefixes())
    for _ in range(1000):
        p = "us" + secrets.token_hex(2)
        if p not in existing and not os.path.exists(state_path(p)):
            return p
    raise LabError("could not find a free lab prefix")


def claim_prefix(prefix, auto):
    """Atomically reserve a prefix (O_EXCL state file) so parallel labs never share one.

    With ``auto`` a taken prefix is replaced by a fresh one; returns the prefix claimed.
    """
    os.makedirs(STATE_DIR, exist_ok=True)
    for _ in range(100):
        try:
            os.close(os.open(state_path(prefix), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            if not auto:
                raise LabError(f"lab prefix {prefix} is in use ({state_path(prefix)})")
            prefix = fresh_prefix()
            continue
        if any(n.startswith(prefix + "-") for n in list_netns()):
            os.unlink(state_path(prefix))
            if not auto:
                raise LabError(f"namespaces {prefix}-* exist already (lab down --all?)")
            prefix = fresh_prefix()
            continue
        return prefix
    raise LabError("could not claim a lab prefix")


def cleanup_stale(prefix, remove_workdir=None):
    """Remove every namespace named ``<prefix>-*`` (killing its processes) and the state file.

    The workdir is removed only if the lab's state file says the lab created it
    (or ``remove_workdir`` is True); nothing else outside namespaces is touched.
    """
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"not a lab prefix: {prefix!r}")
    st = read_state(prefix)
    nss = [n for n in list_netns() if n.startswith(prefix + "-")]
    # Servers first, lan last (lan has no processes normally).
    for ns in sorted(nss, key=lambda n: n.endswith("-lan")):
        kill_namespace_processes(ns)
    for ns in nss:
        sh(["ip", "netns", "del", ns], check=False)
    if st:
        wd = st.get("workdir")
        rm = remove_workdir if remove_workdir is not None else (st.get("owns_workdir") and not st.get("keep_workdir"))
        if rm and wd and os.path.isdir(wd):
            shutil.rmtree(wd, ignore_errors=True)
    try:
        os.unlink(state_path(prefix))
    except FileNotFoundError:
        pass
    left = [n for n in list_netns() if n.startswith(prefix + "-")]
    if left:
        raise LabError(f"namespaces left after cleanup: {left}")


def cleanup_orphans():
    """Clean labs whose owning process died without cleaning up (e.g. SIGKILLed by a timeout).

    Only labs with a state file naming a dead, non-persistent owner are touched, so
    labs of parallel test processes are left alone.
    """
    cleaned = []
    for st in list_states():
        if st.get("persistent"):
            continue
        if not pid_alive(st.get("owner_pid", -1), st.get("owner_start")):
            cleanup_stale(st["prefix"])
            cleaned.append(st["prefix"])
    return cleaned


# --------------------------------------------------------------------------- one lab's network

@dataclasses.dataclass
class LossRule:
    handle: int
    comment: str
    expr: str


def check_node(node):
    if node not in NODES:
        raise ValueError(f"unknown node {node!r}")
    return node


class Network:
    """The namespaces of one lab: a client, a primary and a backup joined by a bridge in a lan
    namespace, and the loss rules on that bridge."""

    def __init__(self, prefix, offloads=True):
        self.prefix = prefix
        self.offloads = offloads
        self._loss_seq = 0

    def ns(self, node):
        if node not in NODES and node != "lan":
            raise ValueError(f"unknown node {node!r}")
        return f"{self.prefix}-{node}"

    @property
    def namespaces(self):
        return [self.ns(n) for n in ("lan",) + NODES]

    def nsexec(self, node, args, **kw):
        return sh(["ip", "netns", "exec", self.ns(node)] + list(args), **kw)

    def _sysctl(self, node, *settings):
        self.nsexec(node, ["sysctl", "-q", "-w"] + list(settings))

    def create(self):
        lan = self.ns("lan")
        for ns in self.namespaces:
            sh(["ip", "netns", "add", ns])
        for node in ("lan",) + NODES:
            sh(["ip", "-n", self.ns(node), "link", "set", "lo", "up"])
            self._sysctl(node, "net.ipv6.conf.all.disable_ipv6=1",
                         "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.ip_forward=0")
        sh(["ip", "-n", lan, "link", "add", "br0", "type", "bridge", "stp_state", "0"])
        sh(["ip", "-n", lan, "link", "set", "br0", "mtu", str(MTU), "up"])
        for node in NODES:
            port = f"v-{node}"
            sh(["ip", "-n", lan, "link", "add", port, "mtu", str(MTU), "type", "veth",
                "peer", "name", "eth0", "mtu", str(MTU), "netns", self.ns(node)])
            sh(["ip", "-n", lan, "link", "set", port, "master", "br0"])
            if not self.offloads:
                self.nsexec("lan", ["ethtool", "-K", port] + OFFLOADS)
                self.nsexec(node, ["ethtool", "-K", "eth0"] + OFFLOADS)
            sh(["ip", "-n", self.ns(node), "addr", "add", f"{NODE_IPS[node]}/{PREFIXLEN}", "dev", "eth0"])
            sh(["ip", "-n", lan, "link", "set", port, "up"])
            sh(["ip", "-n", self.ns(node), "link", "set", "eth0", "up"])
        sh(["ip", "netns", "exec", lan, "nft", "-f", "-"], input=(
            f"table bridge {NFT_TABLE} {{\n"
            f"  chain {NFT_CHAIN} {{ type filter hook forward priority 0; policy accept; }}\n"
            f"}}\n").encode())

    def set_link(self, node, up):
        sh(["ip", "-n", self.ns(node), "link", "set", "eth0", "up" if up else "down"])

    # ---- loss on the bridge
    def nft(self, script=None, args=None):
        base = ["ip", "netns", "exec", self.ns("lan"), "nft"]
        if script is not None:
            return sh(base + ["-f", "-"], input=script.encode())
        return sh(base + list(args))

    def _add_rule(self, from_node, to_node, match, action):
        self._loss_seq += 1
        comment = f"lab-{self._loss_seq}"
        parts = []
        if from_node:
            parts.append(f'iifname "v-{check_node(from_node)}"')
        if to_node:
            parts.append(f'oifname "v-{check_node(to_node)}"')
        if match:
            parts.append(match)
        if action:
            parts.append(action)
        expr = " ".join(parts)
        cp = self.nft(args=["--echo", "--handle", "add", "rule", "bridge", NFT_TABLE, NFT_CHAIN,
                            f'{expr} counter drop comment "{comment}"'])
        m = re.search(rb"# handle (\d+)", cp.stdout)
        handle = int(m.group(1)) if m else self._handle_for(comment)
        return LossRule(handle=handle, comment=comment, expr=expr)

    def drop_once(self, from_node=None, to_node=None, match=""):
        """Drop exactly the first packet bridged from ``from_node`` to ``to_node`` matching ``match``.

        (``quota until 1 bytes`` matches nothing: the kernel adds the packet's length before
        comparing. ``numgen inc mod 4000000000 == 0`` is true only for the first evaluation,
        and it is evaluated only when the earlier expressions matched.)
        """
        return self._add_rule(from_node, to_node, match, "numgen inc mod 4000000000 == 0")

    def drop_random(self, percent, from_node=None, to_node=None, match=""):
        """Drop ``percent``% (0..100) of matching bridged packets at random."""
        if not 0 <= percent <= 100:
            raise ValueError("percent must be 0..100")
        if int(percent) >= 100:  # nft rejects "mod 100 < 100"
            return self.drop_all(from_node, to_node, match)
        return self._add_rule(from_node, to_node, match, f"numgen random mod 100 < {int(percent)}")

    def drop_all(self, from_node=None, to_node=None, match=""):
        """Drop every matching bridged packet until the rule is removed (a partition)."""
        return self._add_rule(from_node, to_node, match, "")

    def loss_rules(self):
        """[{handle, comment, expr, packets, bytes}] for the rules of the loss chain."""
        cp = self.nft(args=["-j", "-a", "list", "chain", "bridge", NFT_TABLE, NFT_CHAIN])
        out = []
        for item in json.loads(cp.stdout.decode())["nftables"]:
            r = item.get("rule")
            if not r:
                continue
            pk = by = 0
            for e in r.get("expr", []):
                if "counter" in e:
                    pk, by = e["counter"]["packets"], e["counter"]["bytes"]
            out.append({"handle": r["handle"], "comment": r.get("comment", ""), "packets": pk, "bytes": by})
        return out

    def _handle_for(self, comment):
        for r in self.loss_rules():
            if r["comment"] == comment:
                return r["handle"]
        raise LabError(f"rule {comment} not found")

    def dropped(self, rule):
        """Packets dropped so far by ``rule`` (a LossRule or handle)."""
        h = rule.handle if isinstance(rule, LossRule) else int(rule)
        for r in self.loss_rules():
            if r["handle"] == h:
                return r["packets"]
        raise LabError(f"no loss rule with handle {h}")

    def remove_loss(self, rule):
        h = rule.handle if isinstance(rule, LossRule) else int(rule)
        self.nft(args=["delete", "rule", "bridge", NFT_TABLE, NFT_CHAIN, "handle", str(h)])

    def clear_loss(self):
        self.nft(args=["flush", "chain", "bridge", NFT_TABLE, NFT_CHAIN])

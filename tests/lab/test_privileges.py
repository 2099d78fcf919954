"""Least privilege (issue 10, item 6): once its sockets, TUN and control socket are open, each
daemon runs as node.user (default nobody) with CAP_NET_ADMIN only (the fault points take eth0 down),
no_new_privs and one seccomp filter. Read from /proc/<pid>/status of the running daemons, then
checked by serving: byte-exact replies, a failover through the daemon's own `crash` (the one use of
the kept capability), a rejoin (a new daemon drops again) and a second failover, with no call
refused by the filter. node.user = "root" keeps the old behaviour; an unknown user is a config error.

Read tests/lab/node_case.py first; src/node/host.cpp (give_up_privileges) is the code under test.
"""
import os
import pwd
import re
import stat
import subprocess

from tests.lab.node_case import BINARY, NEEDS_ROOT, NodeCase

STREAM = ["/f/1k.bin", "/f/10k.bin", "/f/100k.bin", "/f/5k.bin", "/f/1m.bin"]
NET_ADMIN = 1 << 12  # CAP_NET_ADMIN
DROPPED_LINE = re.compile(
    r"node: running as nobody \(uid (\d+), gid (\d+)\), capabilities kept: cap_net_admin \(fault "
    r"points take the link down\), no_new_privs, seccomp on \((\d+) system calls allowed, 5 of them "
    r"with restricted arguments; (\d+) BPF instructions(?:; [^)]*)?\)")


def proc_status(pid):
    """/proc/<pid>/status as a dict of its fields (text after the colon, stripped)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


@NEEDS_ROOT
class PrivilegesTest(NodeCase):
    def daemon_status(self, node):
        pids = self.lab.daemon_pids(node)
        self.assertEqual(len(pids), 1, f"{node}: daemon pids {pids}")
        return pids[0], proc_status(pids[0])

    def log(self, node):
        with open(os.path.join(self.lab.node_dir(node), "understudy.log"), errors="replace") as f:
            return f.read()

    def assert_unprivileged(self, node):
        """The running daemon of ``node``: nobody, CAP_NET_ADMIN alone, no_new_privs, 1 filter."""
        nobody = pwd.getpwnam("nobody")
        pid, st = self.daemon_status(node)
        uid, gid = str(nobody.pw_uid), str(nobody.pw_gid)
        print(f"\n{node} daemon {pid}: Uid {st['Uid']!r} Gid {st['Gid']!r} CapEff {st['CapEff']} "
              f"CapPrm {st['CapPrm']} CapBnd {st['CapBnd']} NoNewPrivs {st['NoNewPrivs']} "
              f"Seccomp {st['Seccomp']} Seccomp_filters {st['Seccomp_filters']}", flush=True)
        self.assertEqual(st["Uid"].split(), [uid] * 4, st["Uid"])
        self.assertEqual(st["Gid"].split(), [gid] * 4, st["Gid"])
        self.assertEqual(st["Groups"], "")
        for key in ("CapEff", "CapPrm", "CapBnd"):
            self.assertEqual(int(st[key], 16), NET_ADMIN, f"{key} {st[key]}")
        for key in ("CapInh", "CapAmb"):
            self.assertEqual(int(st[key], 16), 0, f"{key} {st[key]}")
        self.assertEqual(st["NoNewPrivs"], "1")
        self.assertEqual(st["Seccomp"], "2")  # filter mode
        self.assertEqual(st["Seccomp_filters"], "1")
        m = DROPPED_LINE.findall(self.log(node))
        self.assertTrue(m, self.log(node)[-3000:])
        self.assertEqual(m[-1][:2], (uid, gid))
        return pid

    def assert_nothing_refused(self):
        for node in ("primary", "backup"):
            self.assertNotIn("seccomp: refused", self.log(node))

    def test_daemons_serve_unprivileged_through_failover_and_rejoin(self):
        self.start_duplex()
        for node in ("primary", "backup"):
            self.assert_unprivileged(node)
            # Made by root before the drop; root still reaches it (status above, crash below).
            sock = os.stat(self.lab.config_path(node).replace("understudy.toml", "control.sock"))
            self.assertEqual((sock.st_uid, stat.S_IMODE(sock.st_mode)), (0, 0o600))
        h = self.stream("keepalive", STREAM, interval_ms=10)
        self.wait_replies(h, 10)

        # The daemon's own crash: it takes eth0 down (SIOCSIFFLAGS, the kept CAP_NET_ADMIN) and
        # SIGKILLs itself; both calls are on the allow-list, so it dies by SIGKILL, not SIGSYS.
        proc = self.lab.procs[("primary", "daemon")]
        cp = self.lab.run_in("primary", [BINARY, "crash", "--config",
                                         self.lab.config_path("primary")], check=False)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.wait_dead("primary")
        self.assertEqual(proc.wait(timeout=10), -9)
        link = self.lab.run_in("primary", ["ip", "-o", "link", "show", "eth0"]).stdout.decode()
        self.assertNotIn(",UP", link)
        mark = self.replies(h)
        self.wait_survivor("backup")
        self.wait_replies(h, mark + 20)

        # Rejoin: a new primary opens everything as root and drops again.
        self.lab.restart_node("primary")
        self.lab.wait_status("primary", timeout=15, mode="duplex", channel_up=True)
        self.lab.wait_status("backup", mode="duplex", front=True)
        self.assert_unprivileged("primary")
        self.assert_unprivileged("backup")

        # A second failover, the backup this time (the lab's crash: eth0 down, SIGKILL).
        fresh = self.stream("fresh", STREAM, interval_ms=10, new_connections=True)
        self.wait_replies(fresh, 10)
        self.lab.crash("backup")
        self.lab.wait_status("primary", mode="simplex", front=True, failovers=1)
        mark = self.replies(fresh)
        self.wait_replies(fresh, mark + 20)
        served = len(self.stream_results(h)) + len(self.stream_results(fresh))
        print(f"privileges: {served} replies byte-exact across a crash, a rejoin and a crash, "
              f"served by daemons running as nobody", flush=True)
        self.assert_nothing_refused()

    def test_handover_and_restart_unprivileged(self):
        """SIGTERM's planned handover (channel drain, poll) and a restart run under the filter."""
        self.start_duplex()
        h = self.stream("keepalive", STREAM, interval_ms=10)
        self.wait_replies(h, 10)
        self.assertEqual(self.lab.stop_node("backup"), 0)
        self.lab.wait_status("primary", mode="simplex", front=True, failovers=1)
        mark = self.replies(h)
        self.wait_replies(h, mark + 20)
        self.lab.start_node("backup")
        self.lab.wait_status("backup", timeout=15, mode="duplex", front=True)
        self.assert_unprivileged("backup")
        mark = self.replies(h)
        self.wait_replies(h, mark + 20)
        self.stream_results(h)
        self.assert_nothing_refused()


@NEEDS_ROOT
class RootOptOutTest(NodeCase):
    config_overrides = {"node_user": "root"}

    def test_root_keeps_every_privilege(self):
        self.start_duplex()
        own = proc_status(os.getpid())
        for node in ("primary", "backup"):
            pids = self.lab.daemon_pids(node)
            self.assertEqual(len(pids), 1, pids)
            st = proc_status(pids[0])
            self.assertEqual(st["Uid"].split(), ["0"] * 4)
            self.assertEqual(st["CapEff"], own["CapEff"])  # what root had when it started it
            self.assertEqual(st["NoNewPrivs"], "0")
            self.assertEqual(st["Seccomp"], "0")
            with open(os.path.join(self.lab.node_dir(node), "understudy.log")) as f:
                self.assertIn('node: running as root with every capability and no system-call '
                              'filter (node.user = "root")', f.read())
        h = self.stream("keepalive", STREAM, interval_ms=10)
        self.wait_replies(h, 10)
        self.stream_results(h)


@NEEDS_ROOT
class UnknownUserTest(NodeCase):
    config_overrides = {"node_user": "no-such-user-understudy"}

    def test_unknown_user_is_a_config_error(self):
        want = 'node.user: no user "no-such-user-understudy" on this host'
        path = self.lab.config_path("primary")
        cp = subprocess.run([BINARY, "check", "--config", path], capture_output=True, timeout=30)
        self.assertEqual((cp.returncode, cp.stdout.decode().strip()), (2, want))
        # `run` refuses before it opens anything: no TUN device appears in the namespace.
        cp = self.lab.run_in("primary", [BINARY, "run", "--config", path], timeout=30)
        self.assertEqual((cp.returncode, cp.stderr.decode().strip()), (2, want))
        links = self.lab.run_in("primary", ["ip", "-o", "link", "show"]).stdout.decode()
        self.assertNotIn("understudy0", links)
        self.assertFalse(os.path.exists(os.path.join(self.lab.node_dir("primary"),
                                                     "control.sock")))


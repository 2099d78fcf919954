"""Notify hooks (issue 12, item 7; node/hooks.hpp): hooks.on_front runs when a node becomes the
front, hooks.on_alone when it starts serving alone. Each node's hook is a script that appends one
line per run to hooks.out in its node directory: the event, its arguments, the UNDERSTUDY_*
variables, its uid, and any socket or TUN descriptor it inherited (there must be none).

The semantics checked: a pair's backup runs on_front (duplex) and the primary nothing; a backup
that takes over was the front already and runs on_alone only; a primary whose backup dies runs
on_front then on_alone; a rejoin runs nothing on the survivor (a rejoining backup becomes the front
again and runs on_front). "Nothing more" is proven with a later event through the same runner:
the runner starts hooks in the order the node sent the events, so once the later hook's line is
there, the runner's log holds a "started" line for every event before it.

A hook is an external process: its file is polled with a deadline (ul.wait_for), no fixed sleep.
Read tests/lab/node_case.py first.
"""
import json
import os
import re
import signal

from tests.lab.node_case import NEEDS_ROOT, NodeCase, ul

HOOK = """#!/bin/sh
# Test hook: one line per run (what it was told, who it runs as, what it inherited).
fds=""
for f in /proc/$$/fd/*; do fds="$fds $(readlink "$f")"; done
inherited=$(echo "$fds" | tr ' ' '\\n' | grep -c -E '^socket:|/dev/net/tun|^anon_inode:\\[pidfd\\]')
echo "$UNDERSTUDY_EVENT args=$1,$2,$3 role=$UNDERSTUDY_ROLE mode=$UNDERSTUDY_MODE \
advertised=$UNDERSTUDY_ADVERTISED peer=$UNDERSTUDY_PEER uid=$(id -u) inherited=$inherited" >> "$0.out"
"""

# Starts a child that would outlive a careless kill, records both pids, then hangs.
HANGING = """#!/bin/sh
sleep 1000 &
echo "$$ $!" >> "$0.out"
wait
"""

PEER = {"primary": "backup", "backup": "primary"}


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


class HookCase(NodeCase):
    hooks = {}  # extra [hooks] keys

    def setUp(self):
        super().setUp()
        for node in ("primary", "backup"):
            script = write_script(os.path.join(self.lab.node_dir(node), "hook"), self.script)
            self.lab.write_config(node, hooks={"on_front": script, "on_alone": script,
                                               **self.hooks})

    def out_path(self, node):
        return os.path.join(self.lab.node_dir(node), "hook.out")

    def lines(self, node):
        try:
            with open(self.out_path(node)) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def log(self, node):
        with open(os.path.join(self.lab.node_dir(node), "understudy.log"), errors="replace") as f:
            return f.read()

    def started(self, node):
        """How many times the node's runner started each hook (its log, all incarnations)."""
        log = self.log(node)
        return {h: len(re.findall(rf"hooks: on_{h} started", log)) for h in ("front", "alone")}


@NEEDS_ROOT
class HooksTest(HookCase):
    script = HOOK

    def expect(self, node, event, mode):
        peer = ul.NODE_IPS[PEER[node]]
        return (f"{event} args={event},{node},{mode} role={node} mode={mode} "
                f"advertised={ul.ADVERTISED} peer={peer} uid=0 inherited=0")

    def wait_lines(self, node, expected, timeout=10):
        """Wait until the node's hook file holds the lines of ``expected`` (a list of (event,
        mode)) and no other. Compared as a multiset: on_front and on_alone may run at the same
        time, so their lines of one event may come in either order."""
        want = sorted(self.expect(node, e, m) for e, m in expected)
        ul.wait_for(lambda: len(self.lines(node)) >= len(want), timeout,
                    f"{len(want)} hook line(s) on {node}",
                    details=lambda: f"lines: {self.lines(node)}\n{self.lab.log_tail(node, 'understudy')}")
        self.assertEqual(sorted(self.lines(node)), want)

    def test_primary_crash_backup_runs_front_then_alone_and_nothing_at_rejoin(self):
        self.start_duplex()
        self.wait_lines("backup", [("front", "duplex")])

        self.lab.crash("primary")
        self.wait_survivor("backup")
        # The backup was the front already: on_alone only.
        self.wait_lines("backup", [("front", "duplex"), ("alone", "simplex")])

        self.lab.link_up("primary")
        self.lab.restart_node("primary")
        self.lab.wait_status("primary", timeout=15, mode="duplex", channel_up=True)
        self.lab.wait_status("backup", mode="duplex", front=True)
        r = self.lab.curl_fetch("/f/1k.bin")
        self.assertEqual((r.rc, r.status), (0, 200), r)

        # A later event through the backup's runner: nothing ran in between (no on_front at the
        # rejoin, the backup stayed the front).
        self.lab.crash("primary")
        self.lab.wait_status("backup", mode="simplex", front=True, failovers=2)
        self.wait_lines("backup", [("front", "duplex"), ("alone", "simplex"), ("alone", "simplex")])
        self.assertEqual(self.started("backup"), {"front": 1, "alone": 2})
        # The primary was never the front and never alone, in either run.
        self.assertEqual(self.started("primary"), {"front": 0, "alone": 0})
        self.assertEqual(self.lines("primary"), [])

    def test_backup_crash_primary_runs_front_and_alone(self):
        self.start_duplex()
        self.wait_lines("backup", [("front", "duplex")])

        self.lab.crash("backup")
        self.wait_survivor("primary")
        self.wait_lines("primary", [("front", "simplex"), ("alone", "simplex")])

        # The backup rejoins: it becomes the front again (on_front); the primary runs nothing.
        self.lab.link_up("backup")
        self.lab.restart_node("backup")
        self.lab.wait_status("backup", timeout=15, mode="duplex", front=True)
        self.lab.wait_status("primary", mode="duplex", front=False)
        self.wait_lines("backup", [("front", "duplex"), ("front", "duplex")])

        self.lab.crash("backup")
        self.lab.wait_status("primary", mode="simplex", front=True, failovers=2)
        self.wait_lines("primary", [("front", "simplex"), ("alone", "simplex")] * 2)
        self.assertEqual(self.started("primary"), {"front": 2, "alone": 2})

    def test_dead_runner_loses_the_event_is_counted_and_the_node_serves_on(self):
        self.start_duplex()
        self.wait_lines("backup", [("front", "duplex")])
        st = self.lab.node_status("backup")
        self.assertEqual(st["hooks"], {"events_sent": 1, "events_dropped": 0}, st)
        runners = self.runner_pids("backup")
        self.assertEqual(len(runners), 1, runners)
        os.kill(runners[0], signal.SIGKILL)

        # on_alone has nobody to run it: dropped without waiting, counted, logged; the takeover
        # and the service do not depend on it.
        self.lab.crash("primary")
        self.wait_survivor("backup")
        st = self.lab.wait_status("backup", mode="simplex", front=True, failovers=1)
        self.assertEqual(st["hooks"], {"events_sent": 1, "events_dropped": 1}, st)
        self.assertIn("hooks: on_alone not run: the hook runner is gone (1 dropped so far)",
                      self.log("backup"))
        self.assertEqual(self.lines("backup"), [self.expect("backup", "front", "duplex")])
        r = self.lab.curl_fetch("/f/100k.bin")
        self.assertEqual((r.rc, r.status), (0, 200), r)

    def test_runner_exits_with_its_node(self):
        self.start_duplex()
        self.wait_lines("backup", [("front", "duplex")])
        runners = self.runner_pids("backup")
        self.assertEqual(len(runners), 1, runners)
        # SIGKILL the daemon alone (the lab's crash kills the runner too): its end of the
        # socketpair closes and the runner, idle, exits instead of staying an orphan.
        daemon = [p for p in self.lab.daemon_pids("backup") if p not in runners]
        self.assertEqual(len(daemon), 1, daemon)
        os.kill(daemon[0], signal.SIGKILL)
        ul.wait_for(lambda: not any(ul.pid_alive(p) and ul.proc_state(p) != "Z" for p in runners),
                    10, "the backup's hook runner to exit")

    def test_runner_logs_in_the_nodes_format(self):
        for node in ("primary", "backup"):
            script = os.path.join(self.lab.node_dir(node), "hook")
            self.lab.write_config(node, hooks={"on_front": script, "on_alone": script},
                                  log={"format": "json"})
        self.start_duplex()
        self.wait_lines("backup", [("front", "duplex")])
        ul.wait_for(lambda: "exited 0" in self.log("backup"), 10, "the runner's exit line")
        lines = [json.loads(x) for x in self.log("backup").splitlines()]  # every line is JSON
        runner = [x for x in lines if x["msg"].startswith("hooks: on_front")]
        self.assertEqual(len(runner), 2, runner)
        self.assertRegex(runner[0]["msg"],
                         r"^hooks: on_front started: \S+/hook front backup duplex \(pid \d+\)$")
        self.assertRegex(runner[1]["msg"], r"^hooks: on_front exited 0 after \d+ ms$")
        self.assertTrue(all(x["role"] == "backup" for x in runner), runner)

    def runner_pids(self, node):
        pids = []
        for pid in self.lab.daemon_pids(node):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"\0hook-runner\0" in f.read():
                        pids.append(pid)
            except OSError:
                pass
        return pids


@NEEDS_ROOT
class HookTimeoutTest(HookCase):
    script = HANGING
    hooks = {"timeout_ms": 2000}

    def test_hanging_hook_is_killed_and_the_node_serves_on(self):
        self.start_duplex()
        out = os.path.join(self.lab.node_dir("backup"), "hook.out")
        ul.wait_for(lambda: os.path.exists(out) and open(out).read().strip(), 10,
                    "the backup's on_front to start")
        shell, child = (int(x) for x in open(out).read().split())
        # Served while the hook hangs.
        r = self.lab.curl_fetch("/f/100k.bin")
        self.assertEqual((r.rc, r.status), (0, 200), r)
        ul.wait_for(lambda: "hooks: on_front still running after 2000 ms: killed" in self.log("backup"),
                    10, "the runner to kill the hanging hook",
                    details=lambda: self.lab.log_tail("backup", "understudy"))
        ul.wait_for(lambda: re.search(r"hooks: on_front died of Killed after \d+ ms",
                                      self.log("backup")), 5, "the runner to reap it")
        # Its whole process group: the shell and the sleep it started.
        for pid in (shell, child):
            ul.wait_for(lambda: not ul.pid_alive(pid) or ul.proc_state(pid) == "Z", 5,
                        f"hook process {pid} to be gone")
        st = self.lab.wait_status("backup", mode="duplex", front=True)
        self.assertEqual(st["failovers"], 0)
        r = self.lab.curl_fetch("/f/1k.bin")
        self.assertEqual((r.rc, r.status), (0, 200), r)


@NEEDS_ROOT
class NoHooksTest(NodeCase):
    def test_no_runner_without_hooks(self):
        self.start_duplex()
        for node in ("primary", "backup"):
            cmdlines = []
            for pid in self.lab.daemon_pids(node):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdlines.append(f.read())
            # The daemon alone: no runner is spawned when no hook is set.
            self.assertEqual(len(cmdlines), 1, cmdlines)
            self.assertIn(b"\0run\0", cmdlines[0])

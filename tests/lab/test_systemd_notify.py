"""systemd's Type=notify (issue 12, item 2): the test plays the service manager. It binds an AF_UNIX
datagram socket per node, starts the daemons with NOTIFY_SOCKET pointing at it (and WATCHDOG_USEC),
and reads what they send: STATUS= while starting, READY=1 with a STATUS= naming role and mode once
the node serves, a new STATUS= when the peer dies, WATCHDOG=1 at half the interval all along, and
STOPPING=1 at SIGTERM. The daemons run as nobody under their seccomp filter (the default), so every
message after the first turn of the loop also shows that sd_notify works after the privilege drop.

Read src/sys/service_notify.hpp first; tests/lab/node_case.py for the fixture.
"""
import os
import re
import shutil
import socket
import tempfile
import time

from tests.lab.node_case import BINARY, NEEDS_ROOT, NodeCase

WATCHDOG_USEC = 200000  # the daemon pings every 100 ms
UNIT = os.path.join(os.path.dirname(__file__), "..", "..", "packaging", "understudy.service")


def unit_capabilities():
    """The unit's CapabilityBoundingSet= as setpriv names them: ['net_admin', ...]."""
    with open(UNIT) as f:
        m = re.search(r"^CapabilityBoundingSet=(.*)$", f.read(), re.M)
    return [c.removeprefix("CAP_").lower() for c in m.group(1).split()]


class ManagerSocket:
    """One node's end of the notify protocol, as systemd holds it: a bound datagram socket."""

    def __init__(self, test, name):
        self.dir = tempfile.mkdtemp(prefix=f"us-notify-{name}-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        os.chmod(self.dir, 0o755)  # the daemon sends as nobody after its drop, like to systemd's
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        test.addCleanup(self.sock.close)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)
        self.messages = []  # every datagram, in order
        self.cursor = 0     # await_message() looks at messages from here on

    def env(self):
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)}

    def await_message(self, predicate, what, timeout=15):
        """Return the first message from the cursor on that ``predicate`` accepts (reading the
        socket until one arrives) and move the cursor past it."""
        deadline = time.monotonic() + timeout
        while True:
            while self.cursor < len(self.messages):
                m = self.messages[self.cursor]
                self.cursor += 1
                if predicate(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"received {self.messages[-12:]!r}")
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass


def fields(message):
    """'READY=1\\nSTATUS=...' -> {'READY': '1', 'STATUS': '...'}"""
    return dict(line.split("=", 1) for line in message.split("\n") if line)


def is_ready(m):
    return fields(m).get("READY") == "1"


def is_watchdog(m):
    return fields(m).get("WATCHDOG") == "1"


@NEEDS_ROOT
class SystemdNotifyTest(NodeCase):
    def log(self, node):
        with open(os.path.join(self.lab.node_dir(node), "understudy.log"), errors="replace") as f:
            return f.read()

    def await_watchdogs(self, manager, n):
        for i in range(n):
            manager.await_message(is_watchdog, f"WATCHDOG=1 number {i + 1} of {n}")

    def assert_quiet_log(self, node):
        text = self.log(node)
        self.assertNotIn("seccomp: refused", text)
        self.assertNotIn("cannot notify the service manager", text)

    def test_pair_ready_status_watchdog_and_failover(self):
        managers = {node: ManagerSocket(self, node) for node in ("primary", "backup")}
        self.start_duplex(primary_env=managers["primary"].env(),
                          backup_env=managers["backup"].env())
        expected_ready = {"primary": "role primary, mode duplex",
                          "backup": "role backup, mode duplex, front"}
        for node, manager in managers.items():
            ready = manager.await_message(is_ready, f"{node}: READY=1")
            self.assertEqual(fields(ready).get("STATUS"), expected_ready[node], ready)
            # Before it: the status of a starting node (watchdog pings start with the loop).
            self.assertEqual(manager.messages[0], f"STATUS=role {node}, mode starting",
                             manager.messages[:5])
            self.await_watchdogs(manager, 3)
            print(f"\n{node}: {manager.messages[:3]!r}", flush=True)

        # The primary dies: the backup serves alone and says so once, without a second READY=1.
        self.lab.crash("primary")
        backup = managers["backup"]
        status = backup.await_message(lambda m: "STATUS" in fields(m), "backup: a new STATUS=")
        self.assertEqual(status, "STATUS=role backup, mode simplex, front")
        self.await_watchdogs(backup, 3)  # the loop goes on after the takeover
        self.assertEqual(sum(1 for m in backup.messages if is_ready(m)), 1, backup.messages)
        self.assertEqual(self.status("backup")["mode"], "simplex")
        self.assert_quiet_log("backup")
        self.assert_quiet_log("primary")

    def start_bounded(self, node, caps, manager):
        """Start ``node``'s daemon as systemd would with the unit's CapabilityBoundingSet=
        ``caps`` and NoNewPrivileges= (util-linux setpriv; systemd need not be PID 1 here)."""
        bounding = ",".join(["-all"] + ["+" + c for c in caps])
        args = ["setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "--no-new-privs",
                BINARY, "run", "--config", self.lab.config_path(node)]
        return self.lab.processes.spawn(node, "daemon", args, "understudy.log", env=manager.env())

    def test_pair_starts_within_the_units_capability_bounding_set(self):
        caps = unit_capabilities()
        self.assertIn("net_admin", caps)
        # The control: one capability fewer (CAP_SETPCAP: the daemon shrinks its own bounding set
        # at the drop) and the node cannot start, so the bounding set really is applied.
        self.lab.write_config("primary", node_startup_wait_ms=300)
        manager = ManagerSocket(self, "control")
        p = self.start_bounded("primary", [c for c in caps if c != "setpcap"], manager)
        self.assertEqual(p.wait(timeout=20), 1)
        self.assertIn("cannot drop privileges", self.log("primary"))
        self.assertFalse(any(is_ready(m) for m in manager.messages))

        self.lab.write_config("primary")
        managers = {node: ManagerSocket(self, node) for node in ("primary", "backup")}
        for node in ("primary", "backup"):
            self.start_bounded(node, caps, managers[node])
        for node, manager in managers.items():
            ready = manager.await_message(is_ready, f"{node}: READY=1 within the unit's caps")
            self.assertIn("mode duplex", fields(ready)["STATUS"], ready)
        self.lab.wait_status("backup", mode="duplex", front=True)
        self.assert_quiet_log("backup")

    def test_node_alone_ready_in_simplex_then_stopping(self):
        self.lab.write_config("primary", node_startup_wait_ms=300)
        manager = ManagerSocket(self, "primary")
        self.lab.start_node("primary", env=manager.env())
        ready = manager.await_message(is_ready, "primary: READY=1 after the startup wait")
        self.assertEqual(fields(ready).get("STATUS"), "role primary, mode simplex, front")
        self.await_watchdogs(manager, 2)
        self.lab.stop_node("primary")
        stopping = manager.await_message(lambda m: "STOPPING" in fields(m), "STOPPING=1")
        self.assertEqual(fields(stopping), {"STOPPING": "1",
                                            "STATUS": "role primary, stopping: signal"})
        self.assertEqual(self.lab.processes.procs[("primary", "daemon")].wait(timeout=10), 0)
        self.assert_quiet_log("primary")

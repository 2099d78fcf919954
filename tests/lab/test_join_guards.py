"""Join guards (issue 9, item 6): a node whose config differs from its peer's in a setting both
must share (config::shared_settings; docs/CONFIG.md "Settings both nodes must share") refuses to
start: exit code 3 and one log line naming every differing key with both values. A survivor that
serves alone logs one warning, keeps serving and never goes duplex with it.

Read tests/lab/node_case.py first; test_rejoin.py's test_joiner_with_another_key_is_refused is the
key guard these mirror. Every body is checked by size and sha256.
"""
import os
import re
import subprocess

from tests.lab.node_case import NEEDS_ROOT, TIMED_FETCH, URL, NodeCase

BIG = "/f/64m.bin"
RATE = 16 << 20  # the 64 MiB reply stays in flight for ~4 s, across the refused join
DIFFERS = "the peer's config differs from ours: "


@NEEDS_ROOT
class JoinGuardTest(NodeCase):
    # ---- helpers
    def log_offsets(self):
        """Where both daemons' logs end now (a restarted daemon appends to its old log)."""
        return {n: os.path.getsize(os.path.join(self.lab.node_dir(n), "understudy.log"))
                for n in ("primary", "backup")}

    def log_since(self, node, offsets):
        with open(os.path.join(self.lab.node_dir(node), "understudy.log"), "rb") as f:
            f.seek(offsets.get(node, 0))
            return f.read().decode(errors="replace")

    def exit_code(self, p, timeout=20):
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def assert_refused(self, node, rc, log, reason):
        """Exit 3, the refusal on one line, and the node never served."""
        self.assertEqual(rc, 3, log)
        self.assertRegex(log, r"(?m)\] node: refusing to start: " + re.escape(reason) + "$")
        self.assertNotIn("-> simplex", log, f"a refused {node} must never serve")
        self.assertNotIn("-> duplex", log, f"a refused {node} must never join")

    def refused_join(self, joiner, survivor, reason_joiner, reason_survivor, **config):
        """Crash ``joiner``, restart it with ``config`` overrides while ``survivor`` serves alone
        with a paced 64 MiB download in flight; check the refusal on both sides, and that the
        download and a new fetch through the survivor are byte-exact."""
        self.start_duplex()
        self.lab.crash(joiner)
        self.wait_survivor(survivor)
        ready = self.ready_file("big-ready")
        big = self.spawn_client(TIMED_FETCH + [URL + BIG, "--rate", str(RATE), "--ready", ready,
                                               "--ready-after", str(4 << 20), "--timeout", "60"])
        self.wait_file(ready, timeout=30)
        self.lab.write_config(joiner, **config)
        before = self.log_offsets()
        p = self.lab.restart_node(joiner)
        rc = self.exit_code(p)
        self.assert_refused(joiner, rc, self.log_since(joiner, before), reason_joiner)

        # The survivor: one warning naming the joiner's values, nothing else changed.
        st = self.lab.wait_status(survivor, peer="dead")
        self.assertEqual((st["mode"], st["front"], st["failovers"], st["channel_up"]),
                         ("simplex", True, 1, False), st)
        slog = self.log_since(survivor, before)
        self.assertEqual(len(re.findall(
            r"(?m)\] mode: simplex: not joining the " + joiner + r" \(boot \d+\): "
            + re.escape(reason_survivor) + "$", slog)), 1, slog)
        self.assertNotIn("rejoined", slog)
        self.assertNotIn("-> ", slog, "the survivor's mode must not change")
        (r,) = self.timed_result(big)
        self.assert_reply(r, BIG)
        r = self.lab.curl_fetch("/f/1m.bin")
        self.assertEqual((r.status, r.size, r.sha256), (200,) + self.lab.manifest["/f/1m.bin"])

    # ---- tests
    def test_primary_joiner_with_another_heartbeat_timeout_is_refused(self):
        self.refused_join("primary", "backup",
                          DIFFERS + "heartbeat.timeout_ms (ours 200, peer's 100)",
                          DIFFERS + "heartbeat.timeout_ms (ours 100, peer's 200)",
                          heartbeat={"timeout_ms": 200})

    def test_backup_joiner_with_another_mtu_and_limit_is_refused(self):
        self.refused_join("backup", "primary",
                          DIFFERS + "tun.mtu (ours 1300, peer's 1400), "
                          "limits.max_connections (ours 100, peer's 16384)",
                          DIFFERS + "tun.mtu (ours 1400, peer's 1300), "
                          "limits.max_connections (ours 16384, peer's 100)",
                          tun={"mtu": 1300}, limits={"max_connections": 100})

    def test_pair_starting_with_different_configs_both_refuse(self):
        """Neither node serves yet: each sees the other's Hello (a refusing node writes its own
        out before it closes the channel), so both refuse; neither goes simplex alone."""
        self.lab.write_config("primary", heartbeat={"interval_ms": 25, "timeout_ms": 100})
        procs = {n: self.lab.start_node(n) for n in ("primary", "backup")}
        rcs = {n: self.exit_code(p) for n, p in procs.items()}
        logs = {n: self.log_since(n, {}) for n in procs}
        self.assert_refused("primary", rcs["primary"], logs["primary"],
                            DIFFERS + "heartbeat.interval_ms (ours 25, peer's 20)")
        self.assert_refused("backup", rcs["backup"], logs["backup"],
                            DIFFERS + "heartbeat.interval_ms (ours 20, peer's 25)")
        r = self.lab.curl_fetch("/f/1k.bin", max_time=2)
        self.assertNotEqual(r.rc, 0, f"nobody may serve the address: {r}")

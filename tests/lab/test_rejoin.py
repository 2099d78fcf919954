"""Rejoin (issue 9): a node restarted with its usual config while its peer serves alone joins it.
Both report duplex, roles stay as configured (the backup is the front), connections opened after
the rejoin survive a crash of either node, connections opened before it keep being served by the
survivor, and a joiner with another key is refused while the survivor serves on untouched.

Read tests/lab/node_case.py first; understudy_lab/request_stream.py is the background client that
spans the crash, the restart and the rejoin. Every body is checked by size and sha256.
"""
import os
import re
import subprocess
import time

from tests.lab.node_case import NEEDS_ROOT, TIMED_FETCH, URL, NodeCase, ul
from understudy_lab.configs import keygen

BIG = "/f/64m.bin"
RATE = 16 << 20  # the demo's client: the 64 MiB reply stays in flight for ~4 s
STREAM = ["/f/1k.bin", "/f/10k.bin", "/f/100k.bin", "/f/5k.bin", "/f/1m.bin"]
PEER = {"primary": "backup", "backup": "primary"}


@NEEDS_ROOT
class RejoinTest(NodeCase):
    # ---- helpers (the streams: tests/lab/node_case.py)
    def log_offsets(self):
        """Where both daemons' logs end now (a restarted daemon appends to its old log)."""
        return {n: os.path.getsize(os.path.join(self.lab.node_dir(n), "understudy.log"))
                for n in ("primary", "backup")}

    def log_since(self, node, offsets):
        with open(os.path.join(self.lab.node_dir(node), "understudy.log"), "rb") as f:
            f.seek(offsets[node])
            return f.read().decode(errors="replace")

    def rejoin(self, joiner):
        """Restart the crashed ``joiner`` (same config) and wait until both nodes are duplex with
        the channel up; print and return the seconds from the start to that."""
        survivor = PEER[joiner]
        self.before_rejoin = self.log_offsets()
        t0 = time.monotonic()
        p = self.lab.restart_node(joiner)
        both = {}

        def probe():
            if p.poll() is not None:
                raise ul.LabError(f"{joiner} exited with {p.returncode} while joining")
            for node in (joiner, survivor):
                both[node] = self.status(node)
            return all(st and st["mode"] == "duplex" and st["channel_up"] for st in both.values())
        ul.wait_for(probe, 15, f"{joiner} to rejoin {survivor}",
                    details=lambda: f"last status: {both}; {joiner} log:\n"
                                    f"{self.lab.log_tail(joiner, 'understudy')}\n{survivor} log:\n"
                                    f"{self.lab.log_tail(survivor, 'understudy')}")
        took = time.monotonic() - t0
        print(f"\n{joiner} rejoin: {took * 1000:.0f} ms from start to both duplex", flush=True)
        return took, both

    def assert_rejoin_logged(self, joiner, unprotected=None):
        """The joiner's and the survivor's log lines for this rejoin, with the joiner's boot."""
        survivor = PEER[joiner]
        boot = self.status(joiner)["boot_id"]
        self.assertRegex(self.log_since(joiner, self.before_rejoin),
                         rf"mode: starting -> duplex \(channel up with {survivor}, boot \d+: "
                         r"joining it \(it serves alone\)\)")
        log = self.log_since(survivor, self.before_rejoin)
        self.assertRegex(log, rf"mode: simplex -> duplex \({joiner} rejoined, boot {boot}\)")
        m = re.search(rf"node: {joiner} rejoined: (\d+) connection\(s\) unprotected until their "
                      r"next request boundary; new ones are protected", log)
        self.assertIsNotNone(m, log[-3000:])
        if unprotected is not None:
            self.assertEqual(int(m.group(1)), unprotected, m.group(0))

    def assert_roles_kept(self):
        """Roles as configured after a rejoin: the backup is the front, the primary serves."""
        p, b = self.status("primary"), self.status("backup")
        self.assertEqual((p["role"], p["mode"], p["front"], p["peer"]),
                         ("primary", "duplex", False, "alive"), p)
        self.assertEqual((b["role"], b["mode"], b["front"], b["peer"]),
                         ("backup", "duplex", True, "alive"), b)

    def assert_counts(self, node, protected_at_least=None, unprotected=None):
        """connections_protected / _unprotected, only if the node reports them."""
        st = self.status(node)
        if "connections_unprotected" not in st:
            return
        if unprotected is not None:
            self.assertEqual(st["connections_unprotected"], unprotected, st)
        if protected_at_least is not None:
            self.assertGreaterEqual(st["connections_protected"], protected_at_least, st)

    def download_across_crash(self, victim, survivor, failovers):
        """A NEW connection's paced 64 MiB download; ``victim`` crashes after 16 MiB; the reply
        must complete byte-exact on that connection."""
        ready = self.ready_file("big-ready")
        p = self.spawn_client(TIMED_FETCH + [URL + BIG, "--rate", str(RATE), "--ready", ready,
                                             "--ready-after", str(16 << 20), "--timeout", "60"])
        self.wait_file(ready, timeout=30)
        self.assert_counts("backup", protected_at_least=1, unprotected=0)
        self.lab.crash(victim)
        st = self.lab.wait_status(survivor, mode="simplex", front=True, failovers=failovers)
        (r,) = self.timed_result(p)
        self.assert_reply(r, BIG)
        print(f"{victim} crash mid-64MiB after the rejoin: longest stall {r['max_gap_ms']} ms",
              flush=True)
        self.assertEqual(st["message"]["regen_mismatch"], 0, st)
        return st

    def protected_again(self, survivor, joiner, count, busy=()):
        """Wait until ``survivor`` has handed every old connection to ``joiner`` (status counts 0
        unprotected), keeping ``busy`` streams running; check the log line and both counters."""
        def probe():
            for h in busy:
                if h["p"].poll() is not None:
                    raise ul.LabError(f"{h['name']} ended early")
            return self.status(survivor)["connections_unprotected"] == 0
        ul.wait_for(probe, 20, f"{survivor} to protect its old connections again",
                    details=lambda: f"{survivor}: {self.status(survivor)}\n"
                                    f"{self.lab.log_tail(survivor, 'understudy')}")
        log = self.log_since(survivor, self.before_rejoin)
        handed = sum(int(n) for n in re.findall(
            r"node: (\d+) connection\(s\) protected again at a request boundary; \d+ unprotected",
            log))
        self.assertEqual(handed, count, log[-3000:])
        s, j = self.status(survivor), self.status(joiner)
        self.assertEqual((s["packet"]["flows_handed"], s["packet"]["adoptions_refused"]), (count, 0), s)
        self.assertEqual((j["packet"]["flows_adopted"], j["packet"]["adoptions_refused"]), (count, 0), j)

    def survivor_with_streams(self, victim):
        """Duplex, then ``victim`` crashes; opened while its peer serves alone: an idle keep-alive
        connection (one reply, then it waits at its gate) and a busy one (a request every 20 ms)."""
        self.start_duplex()
        self.lab.crash(victim)
        self.wait_survivor(PEER[victim])
        idle = self.stream("idle", ["/f/100k.bin", "/f/1m.bin", "/f/1k.bin"], gate=True, count=3)
        busy = self.stream("busy", STREAM, interval_ms=20)
        self.wait_replies(idle, 1)
        self.wait_replies(busy, 5)
        return idle, busy

    def old_connections_survive_the_survivor(self, first_victim):
        """Connections opened while ``first_victim`` was away are protected again after it rejoins:
        the survivor's crash right after that loses none of them (issue 9, item 3)."""
        survivor = PEER[first_victim]
        idle, busy = self.survivor_with_streams(first_victim)
        self.rejoin(first_victim)
        self.assert_rejoin_logged(first_victim, unprotected=2)
        self.assert_roles_kept()
        self.protected_again(survivor, first_victim, 2, busy=[busy])
        self.assert_counts(first_victim, unprotected=0)
        mark = self.replies(busy)
        self.wait_replies(busy, mark + 10)  # served as protected connections now
        # The survivor crashes: both old connections go on through the joiner, byte-exact.
        self.lab.crash(survivor)
        st = self.lab.wait_status(first_victim, mode="simplex", front=True, failovers=1)
        mark = self.replies(busy)
        self.wait_replies(busy, mark + 10)
        self.open_gate(idle)
        self.wait_replies(idle, 3)
        for h in (idle, busy):
            results = self.stream_results(h)
            self.assert_one_connection(h, results)
            print(f"{h['name']}: {len(results)} replies byte-exact on one connection, slowest "
                  f"{max(r['ms'] for r in results)} ms", flush=True)
        st = self.status(first_victim)
        self.assertEqual((st["message"]["aborted"], st["message"]["regen_mismatch"]), (0, 0), st)

    # ---- tests
    def test_mid_reply_connection_protected_at_its_next_boundary(self):
        """Mid-reply at the rejoin: not protected yet (its state is not moved); at the boundary after
        the reply it is, so the survivor's crash then loses nothing of its later requests."""
        self.start_duplex()
        self.lab.crash("primary")
        self.wait_survivor("backup")
        ready = self.ready_file("big-ready")
        p = self.spawn_client(TIMED_FETCH + [URL + BIG, "/f/1m.bin", "/f/1k.bin", "--rate", str(RATE),
                                             "--ready", ready, "--ready-after", str(8 << 20),
                                             "--interval-ms", "3000", "--timeout", "60"])
        self.wait_file(ready, timeout=30)
        self.rejoin("primary")
        self.assert_rejoin_logged("primary", unprotected=1)
        self.assert_counts("backup", unprotected=1)  # mid-reply: still the survivor's alone
        t0 = time.monotonic()
        self.protected_again("backup", "primary", 1)
        print(f"mid-reply connection protected {time.monotonic() - t0:.1f} s after the rejoin "
              f"(at the end of its 64 MiB reply)", flush=True)
        # Idle between requests (3 s apart): the survivor crashes; the next requests on the same
        # connection are served by the joiner.
        self.lab.crash("backup")
        self.lab.wait_status("primary", mode="simplex", front=True, failovers=1)
        results = self.timed_result(p)
        for r, path in zip(results, [BIG, "/f/1m.bin", "/f/1k.bin"]):
            self.assert_reply(r, path)
        self.assertEqual(len(results), 3, results)
        st = self.status("primary")
        self.assertEqual((st["message"]["aborted"], st["message"]["regen_mismatch"]), (0, 0), st)

    def joiner_dies_while_adopting(self, joiner):
        """Guards: a joiner that dies in the middle of joining (right after taking one of the
        survivor's connections) leaves the survivor serving alone, not stuck; the connections it
        was taking go on byte-exact on the survivor."""
        survivor = PEER[joiner]
        idle, busy = self.survivor_with_streams(joiner)
        p = self.lab.restart_node(joiner, env={"UNDERSTUDY_FAULT": "joiner.adopted"})
        ul.wait_for(lambda: p.poll() is not None, 15, f"{joiner} to die at joiner.adopted")
        st = self.lab.wait_status(survivor, mode="simplex", front=True, failovers=2, timeout=10)
        self.assertIn("fault: joiner.adopted reached", self.lab.log_tail(joiner, "understudy", 20000))
        mark = self.replies(busy)
        self.wait_replies(busy, mark + 10)
        self.open_gate(idle)
        self.wait_replies(idle, 3)
        for h in (idle, busy):
            self.assert_one_connection(h, self.stream_results(h))
        st = self.status(survivor)
        self.assertEqual((st["mode"], st["connections_unprotected"], st["message"]["aborted"]),
                         ("simplex", 0, 0), st)

    def test_joiner_dies_while_adopting_primary(self):
        self.joiner_dies_while_adopting("primary")

    def test_joiner_dies_while_adopting_backup(self):
        self.joiner_dies_while_adopting("backup")

    def test_old_connections_protected_again_backup_rejoins(self):
        self.old_connections_survive_the_survivor("backup")

    def test_old_connections_protected_again_primary_rejoins(self):
        self.old_connections_survive_the_survivor("primary")

    def test_primary_rejoins_after_crash(self):
        self.start_duplex()
        self.lab.crash("primary")
        self.wait_survivor("backup")
        self.rejoin("primary")
        self.assert_rejoin_logged("primary", unprotected=0)
        self.assert_roles_kept()
        # The joined primary serves a new connection; its crash is a normal failover.
        self.download_across_crash("primary", "backup", failovers=2)

    def test_backup_rejoins_after_crash(self):
        idle, busy = self.survivor_with_streams("backup")  # opened before the rejoin
        self.rejoin("backup")
        at_rejoin = self.replies(busy)
        self.assert_rejoin_logged("backup", unprotected=2)
        self.assert_roles_kept()
        self.protected_again("primary", "backup", 2, busy=[busy])
        # The address moved: the backup's gratuitous ARP updated the client's entry.
        mac = self.lab.run_in("backup", ["cat", "/sys/class/net/eth0/address"]).stdout.decode().strip()
        ul.wait_for(lambda: mac in self.lab.run_in(
            "client", ["ip", "neigh", "show", ul.ADVERTISED_IP]).stdout.decode(), 5,
            f"the client's ARP entry for {ul.ADVERTISED_IP} to name the backup ({mac})")
        # The old connections still get correct replies, now through the new front.
        self.wait_replies(busy, at_rejoin + 20)
        self.open_gate(idle)
        self.wait_replies(idle, 3)
        for h in (idle, busy):
            self.assert_one_connection(h, self.stream_results(h))
        # A new connection is protected: the primary's crash is a failover to the joined backup.
        self.download_across_crash("primary", "backup", failovers=1)

    def test_rejoin_under_verifying_load(self):
        self.start_duplex()
        keep = self.stream("keepalive", STREAM, interval_ms=10)
        fresh = self.stream("fresh", STREAM, interval_ms=10, new_connections=True)
        for h in (keep, fresh):
            self.wait_replies(h, 10)
        self.lab.crash("primary")
        self.wait_survivor("backup")
        marks = {h["name"]: self.replies(h) for h in (keep, fresh)}
        for h in (keep, fresh):
            self.wait_replies(h, marks[h["name"]] + 10)
        self.rejoin("primary")
        self.assert_rejoin_logged("primary")
        self.assert_roles_kept()
        marks = {h["name"]: self.replies(h) for h in (keep, fresh)}
        for h in (keep, fresh):
            self.wait_replies(h, marks[h["name"]] + 30)
        for h in (keep, fresh):
            results = self.stream_results(h)
            slowest = max(r["ms"] for r in results)
            print(f"{h['name']}: {len(results)} replies byte-exact, slowest {slowest} ms", flush=True)
            if h is keep:
                self.assert_one_connection(h, results)
        for node in ("primary", "backup"):
            st = self.status(node)
            self.assertEqual((st["message"]["aborted"], st["message"]["regen_mismatch"]), (0, 0), st)

    def test_joiner_with_another_key_is_refused(self):
        self.start_duplex()
        self.lab.crash("primary")
        self.wait_survivor("backup")
        other = keygen(self.lab.binary, os.path.join(self.lab.workdir, "other.key"))
        self.lab.write_config("primary", peer={"key_file": other})
        before = self.log_offsets()
        p = self.lab.restart_node("primary")
        try:
            rc = p.wait(20)
        except subprocess.TimeoutExpired:
            rc = None
        log = self.log_since("primary", before)
        self.assertEqual(rc, 3, log)
        self.assertRegex(log, r"(?m)refusing to start: the peer's datagrams fail authentication "
                              r"\([^()\n]*\): its key differs from ours \(peer\.key_file\), or it is "
                              r"configured with our role \(node\.role\)$")
        st = self.status("backup")
        self.assertEqual((st["mode"], st["front"], st["failovers"], st["peer"]),
                         ("simplex", True, 1, "dead"), st)
        self.assertNotIn("rejoined", self.log_since("backup", before))
        self.assertNotIn("-> simplex", log, "a refused joiner must never serve beside the survivor")
        r = self.lab.curl_fetch("/f/1m.bin")
        self.assertEqual((r.status, r.size, r.sha256), (200,) + self.lab.manifest["/f/1m.bin"])

"""A crash in the middle of a 64 MiB reply, each role: the client's one connection still gets
every byte, verified against the manifest, with no reset and no retry."""
import json
import os
import unittest

from tests.lab.node_case import URL, NodeCase
from understudy_lab import lab as ul

BIG = "/f/64m.bin"


class LargeReplyFailoverTest(NodeCase):
    def crash_mid_reply(self, victim, survivor):
        self.start_duplex()
        ready = self.ready_file()
        # Paced at 16 MiB/s so the reply is in flight for ~4 s; the crash lands after the headers.
        p = self.timed_fetch([BIG], rate=16 << 20, ready=ready)
        self.wait_file(ready)
        self.lab.crash(victim)
        st = self.wait_survivor(survivor)
        (r,) = self.timed_result(p)
        self.assert_reply(r, BIG)
        print(f"\n{victim} crash mid-64MiB: longest stall {r['max_gap_ms']} ms", flush=True)
        return st

    def test_primary_crash_mid_64m(self):
        st = self.crash_mid_reply("primary", "backup")
        self.assertEqual(st["message"]["regen_mismatch"], 0)

    def test_backup_crash_mid_64m(self):
        self.crash_mid_reply("backup", "primary")

    def test_upload_reaches_the_tap_as_super_segments_only_with_offloads_on(self):
        # The client's TSO hands the front (the backup) 64 KiB segments unless offloads are off;
        # both ways the echo must see the body byte-exact.
        body, sha = self.lab.make_body(4 << 20)
        self.start_duplex()
        cp = self.lab.run_client(["curl", "-sS", "--max-time", "60", "--data-binary", "@" + body,
                                  URL + "/echo"], timeout=90)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        got = json.loads(cp.stdout)
        self.assertEqual((got["length"], got["sha256"]), (4 << 20, sha))
        cut = self.status("backup")["offload"]
        self.assertEqual(cut["frames_refused"], 0)
        if self.lab_options.get("offloads", True):
            self.assertGreater(cut["lan_super_segments"], 0, cut)
        else:
            self.assertEqual(cut["lan_super_segments"], 0, cut)

    def test_reply_leaves_the_primary_in_gso_frames(self):
        # The primary's kernel hands over 64 KiB super-segments; they go to the client whole, as
        # GSO frames through AF_PACKET (the LAN's kernel cuts them, in software when offloads are
        # off), not cut and sent one raw packet each.
        size, sha = self.lab.manifest["/f/1m.bin"]
        self.start_duplex()
        r = self.lab.curl_fetch("/f/1m.bin", max_time=60)
        self.assertEqual((r.rc, r.size, r.sha256), (0, size, sha), r.stderr)
        cut = self.status("primary")["offload"]
        self.assertGreater(cut["kernel_super_segments"], 0, cut)
        self.assertGreater(cut["sent_whole"], 0, cut)
        self.assertEqual((cut["segments_cut"], cut["whole_refused"]), (0, 0), cut)

    def test_link_flap_does_not_stop_gso_frames(self):
        # The primary serves alone under load when its eth0 goes down for a moment: the GSO frames
        # sent meanwhile fail (ENETDOWN) and the kernel resends them; once the link is back,
        # super-segments leave whole again (before, any refusal made it cut them for good).
        self.start_duplex()
        self.lab.crash("backup")
        self.wait_survivor("primary")
        streams = [self.stream(f"load{i}", ["/f/1m.bin"], timeout=60) for i in range(8)]
        for h in streams:
            self.wait_replies(h, 1)

        def refused():
            return self.status("primary")["offload"]["whole_refused"]
        # A frame fails only if one is on its way when the link goes: nothing new is sent once
        # ACKs stop, and the kernel resends one segment at a time. So the link goes down again
        # (after the load flows once more) until one did.
        for _ in range(5):
            self.lab.link_down("primary")
            try:
                ul.wait_for(lambda: refused() > 0, 2, "a GSO frame to fail while eth0 is down")
            except TimeoutError:
                pass
            self.lab.link_up("primary")
            if refused() > 0:
                break
            done = sum(self.replies(h) for h in streams)
            ul.wait_for(lambda: sum(self.replies(h) for h in streams) > done + len(streams), 20,
                        "the load to flow again")
        self.assertGreater(refused(), 0, "no GSO frame was on its way at any of 5 link-downs")
        seen = self.status("primary")["offload"]["sent_whole"]
        ul.wait_for(lambda: self.status("primary")["offload"]["sent_whole"] > seen, 20,
                    "super-segments to leave whole again",
                    details=lambda: self.status("primary")["offload"])
        for h in streams:
            self.stream_results(h)  # every reply byte-exact, none failed
        with open(os.path.join(self.lab.node_dir("primary"), "understudy.log"), errors="replace") as f:
            log = f.read()
        self.assertIn("offload: the LAN dropped a super-segment (Network is down)", log)
        self.assertNotIn("cutting them here from now on", log)

    def upload_64m_across_crash(self, victim, survivor, point):
        body, sha = self.lab.make_body(64 << 20)
        self.start_duplex()
        self.arm(victim, point)
        p = self.spawn_client(["curl", "-sS", "--max-time", "120", "-w", "\n%{http_code} %{num_connects}",
                               "--data-binary", "@" + body, URL + "/echo"])
        self.wait_dead(victim, timeout=60)
        self.wait_survivor(survivor)
        rc, out, err = self.finish(p)
        self.assertEqual(rc, 0, err)
        reply, status = out.decode().rsplit("\n", 1)
        self.assertEqual(status, "200 1", "one connection, one 200")
        got = json.loads(reply)
        self.assertEqual((got["length"], got["sha256"]), (64 << 20, sha))
        self.assertEqual(got["node"], survivor if victim == "primary" else "primary")

    def test_primary_crash_mid_64m_upload(self):
        # About a third of the body's segments have reached the primary when it dies.
        self.upload_64m_across_crash("primary", "backup", "primary.before_ack:15000")

    def test_backup_crash_mid_64m_upload(self):
        self.upload_64m_across_crash("backup", "primary", "backup.before_relay:15000")


class LargeReplyFailoverOffloadsOffTest(LargeReplyFailoverTest):
    """The same four failovers with GRO, TSO, GSO, sg and tx checksum off on every veth: the
    setting the daemon required before issue 11, kept working for hosts that run it."""

    lab_options = {"offloads": False}


if __name__ == "__main__":
    unittest.main()

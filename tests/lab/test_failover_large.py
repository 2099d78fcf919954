"""A crash in the middle of a 64 MiB reply, each role: the client's one connection still gets
every byte, verified against the manifest, with no reset and no retry."""
import unittest

from tests.lab.node_case import NodeCase

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


if __name__ == "__main__":
    unittest.main()

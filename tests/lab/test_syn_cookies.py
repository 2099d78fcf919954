"""Connections made from SYN cookies (limits.syn_cookie_threshold = 0: the front answers every SYN
with one) across a crash of either node: the large-reply and large-upload failovers of
test_failover_large.py, each on a connection both nodes made from the client's returned cookie."""
import unittest

from tests.lab.test_failover_large import LargeReplyFailoverTest


class SynCookieFailoverTest(LargeReplyFailoverTest):
    def start_duplex(self, primary_env=None, backup_env=None):
        for node in ("primary", "backup"):
            self.lab.write_config(node, limits={"syn_cookie_threshold": 0})
        super().start_duplex(primary_env, backup_env)
        # Each node asked its kernel at start what SYN-ACK it sends, which a cookie must promise.
        for node in ("primary", "backup"):
            self.lab.wait_status(node, syn_cookies_ready=True)

    def wait_survivor(self, survivor, *args, **kwargs):
        st = super().wait_survivor(survivor, *args, **kwargs)
        self.assertEqual(st["packet"]["syn_cookie_flows"], 1,
                         f"{survivor}: the connection was not made from a cookie")
        return st


if __name__ == "__main__":
    unittest.main()

"""Deterministic regression tests for failures the chaos harness found (docs/RELIABILITY.md,
"Failures found on the way"). Registered by tests/lab/chaos.cmake as chaos.regress.*; run with
`/usr/bin/python3 -m unittest -v tests.lab.test_chaos_regressions` from the repo root, as root.
"""
import json
import os
import subprocess
import unittest

from understudy_lab import lab as ul
from understudy_lab.chaos.chaoslab import ChaosLab

BINARY = os.environ.get("UNDERSTUDY_BINARY", os.path.join(ul.REPO_ROOT, "build", "understudy"))

# One keep-alive connection (http.client): a GET, then wait for the go file, then a GET and a
# POST on the SAME connection. Prints {"ok", "results", "error"}.
CLIENT = r'''
import hashlib, http.client, json, os, sys, time
go, ready, manifest = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = {"ok": False, "results": []}
try:
    c = http.client.HTTPConnection("198.18.0.100", 80, timeout=10)
    def get(p):
        c.request("GET", p); r = c.getresponse(); b = r.read()
        out["results"].append([p, r.status, len(b), hashlib.sha256(b).hexdigest() == manifest[p][1]])
    get("/f/1k.bin")
    local = c.sock.getsockname()
    open(ready, "w").close()
    deadline = time.monotonic() + 20
    while not os.path.exists(go):
        if time.monotonic() > deadline: raise TimeoutError("go file")
        time.sleep(0.005)  # polling interval for the test's go file
    get("/f/5k.bin")
    body = bytes(range(256)) * 12
    c.request("POST", "/echo", body=body); r = c.getresponse(); j = json.loads(r.read())
    out["results"].append(["POST", r.status, j.get("length"), j.get("sha256") == hashlib.sha256(body).hexdigest()])
    out["same_connection"] = c.sock is not None and c.sock.getsockname() == local
    out["ok"] = True
except Exception as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
'''


@unittest.skipUnless(os.geteuid() == 0, "needs root (network namespaces)")
class ChaosRegressionTest(unittest.TestCase):
    def setUp(self):
        self.lab = ChaosLab(binary=BINARY)
        self.addCleanup(self.lab.down)
        self.lab.up()
        self.lab.keygen()
        for node in ("primary", "backup"):
            self.lab.write_config(node)
        self.lab.start_node("primary")
        self.lab.start_node("backup")
        self.lab.wait_status("primary", mode="duplex", channel_up=True)
        self.lab.wait_status("backup", mode="duplex", front=True)

    def logs(self):
        return "".join(f"\n----- {n} -----\n{self.lab.log_tail(n, 'daemon', 4000)}" for n in ("primary", "backup"))

    def run_idle_then_crash(self, victim):
        survivor = "backup" if victim == "primary" else "primary"
        script = os.path.join(self.lab.workdir, "idle_client.py")
        with open(script, "w") as f:
            f.write(CLIENT)
        go, ready = (os.path.join(self.lab.workdir, n) for n in ("go", "ready"))
        p = subprocess.Popen(["ip", "netns", "exec", self.lab.ns("client"), "/usr/bin/python3", script, go, ready,
                              json.dumps(self.lab.manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            ul.wait_for(lambda: os.path.exists(ready) or p.poll() is not None, 20, "first reply")
            self.lab.crash_host(victim)
            self.lab.wait_status(survivor, timeout=10, mode="simplex", front=True)
            open(go, "w").close()
            out, err = p.communicate(timeout=40)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        res = json.loads(out.decode())
        self.assertTrue(res["ok"], f"{res} {err!r}{self.logs()}")
        self.assertTrue(res["same_connection"], res)
        self.assertEqual(res["results"], [["/f/1k.bin", 200, 1024, True], ["/f/5k.bin", 200, 5120, True],
                                          ["POST", 200, 3072, True]], self.logs())

    def test_idle_keepalive_connection_across_primary_crash(self):
        """Failure 2 (daemon 2fc9fe8, seeds 955333076, 625657877, ...): a connection with nothing
        pending when the primary died; its next requests after the takeover were discarded
        (timeout) or cut (400), because `forwarded` was not the offset where `held` starts."""
        self.run_idle_then_crash("primary")

    def test_idle_keepalive_connection_across_backup_crash(self):
        self.run_idle_then_crash("backup")


if __name__ == "__main__":
    unittest.main()

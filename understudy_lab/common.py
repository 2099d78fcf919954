"""What every part of the lab shares: the lab's addresses and names, its errors, running a
command, waiting for a condition, and looking at processes by pid."""

import os
import subprocess
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"

SUBNET = "198.18.0.0/24"
PREFIXLEN = 24
ADVERTISED_IP = "198.18.0.100"
ADVERTISED = f"{ADVERTISED_IP}:80"
NODE_IPS = {"client": "198.18.0.2", "primary": "198.18.0.11", "backup": "198.18.0.12"}
NODES = ("client", "primary", "backup")
SERVER_NODES = ("primary", "backup")
NGINX_PORT = 8080
NGINX_PROXY_PORT = 8081  # nginx's PROXY protocol listener (LabOptions.nginx_identity)
ECHO_PORT = 9000


class LabError(RuntimeError):
    pass


class BinaryMissing(LabError):
    pass


def python_module(module, *args):
    """argv running ``module`` of this package with Debian's python, from any working directory
    and inside any namespace (``ip netns exec`` keeps the environment ``env`` sets)."""
    return ["/usr/bin/env", f"PYTHONPATH={REPO_ROOT}", PYTHON, "-m", module, *args]


def sh(args, check=True, timeout=30, input=None, capture=True):
    """Run a command (list), return CompletedProcess; raise LabError with output on failure."""
    try:
        cp = subprocess.run(args, input=input, capture_output=capture, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"command timed out after {timeout}s: {' '.join(map(str, args))}") from e
    if check and cp.returncode != 0:
        err = cp.stderr.decode(errors="replace").strip() if capture else ""
        raise LabError(f"command failed ({cp.returncode}): {' '.join(map(str, args))}\n{err}")
    return cp


def wait_for(predicate, timeout, what, interval=0.02, details=None):
    """Poll ``predicate()`` until it returns a truthy value (returned) or ``timeout`` s pass.

    Exceptions from ``predicate`` count as "not yet", except LabError, which is re-raised
    at once (use it for definite failures such as "the server process exited").

    On timeout raise TimeoutError("timed out after Ns waiting for <what>; <details()>").
    The sleep between polls is only the polling interval, never a stand-in for an event.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except LabError:  # a definite failure (e.g. the process died): stop waiting
            raise
        except Exception as e:  # keep polling; report the last error
            last_exc = e
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f"; last error: {last_exc!r}"
            if details is not None:
                try:
                    msg += f"; {details()}"
                except Exception as e:
                    msg += f"; (details failed: {e!r})"
            raise TimeoutError(msg)
        time.sleep(interval)


def proc_start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid, start_time=None):
    st = proc_start_time(pid)
    return st is not None and (start_time is None or st == start_time)


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def kill_pids(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def need_binary(binary):
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise BinaryMissing(f"understudy binary not found or not executable: {binary} (build it first)")

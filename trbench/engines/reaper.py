"""A watchdog process that cleans up after a flow process that died without cleaning up (kill -9).

Servers we start as children can watch their parent themselves (llamacpp_server does); `ollama
serve` processes and Docker containers cannot. For those, a provider starts one reaper beside them:

    python -m trbench.engines.reaper --parent-pid PID [--pgid N ...] [--container ID ...]

It waits until PID is gone, then kills the process groups and force-removes the containers
(docker SDK, from the environment: DOCKER_HOST etc.). If the parent stops them itself first,
the reaper has nothing left to do and exits when the parent exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pgids: list[int], containers: list[str]) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if containers:
        import docker

        try:
            client = docker.from_env()
        except Exception:  # noqa: BLE001 - no engine left to ask: nothing we can remove
            return
        for cid in containers:
            try:
                client.containers.get(cid).remove(force=True)
            except Exception:  # noqa: BLE001 - already gone is the common case
                pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="reaper")
    ap.add_argument("--parent-pid", type=int, required=True)
    ap.add_argument("--pgid", type=int, action="append", default=[])
    ap.add_argument("--container", action="append", default=[])
    ap.add_argument("--interval", type=float, default=0.25)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal Ctrl-C is for the flow, which cleans up
    while pid_alive(args.parent_pid) and os.getppid() == args.parent_pid:
        time.sleep(args.interval)
    _reap(args.pgid, args.container)


def spawn(pgids: Sequence[int] = (), containers: Sequence[str] = ()) -> subprocess.Popen:
    """Start a reaper for this process; stop it (terminate) once the resources are cleaned up normally."""
    cmd = [sys.executable, "-m", "trbench.engines.reaper", "--parent-pid", str(os.getpid())]
    cmd += [x for g in pgids for x in ("--pgid", str(g))]
    cmd += [x for c in containers for x in ("--container", c)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


if __name__ == "__main__":
    main()

"""Stopping the child processes trbench starts (servers, reapers, containers)."""

from __future__ import annotations

import atexit
import subprocess
import weakref
from typing import Protocol


class Stoppable(Protocol):
    def stop(self) -> None: ...


class LiveSet:
    """What one provider started in this process and has not stopped yet. stop_all() runs at exit
    and from the signal handlers and tests; held weakly, so a forgotten instance is not kept alive."""

    def __init__(self) -> None:
        self._items: weakref.WeakSet[Stoppable] = weakref.WeakSet()
        atexit.register(self.stop_all)

    def add(self, item: Stoppable) -> None:
        self._items.add(item)

    def discard(self, item: Stoppable) -> None:
        self._items.discard(item)

    def stop_all(self) -> None:
        for item in list(self._items):
            item.stop()


def terminate(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after timeout_s; returns once it is gone."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)

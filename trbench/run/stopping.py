"""A stop asked for by a signal (Ctrl-C, SIGTERM), and a wait of the main thread that notices it.

The CLI's signal handler raises KeyboardInterrupt in the main thread and ignores any further signal,
so that stopping the servers is not cut short. That single raise is the only notice the flow gets: if
it is held off (the main thread parked in an untimed wait on a worker) or swallowed on its way, the
rest of the matrix runs before the flow stops. The handler therefore also sets this flag, and the main
thread waits on workers in short slices that check it."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

POLL_S = 0.25  # how late a stop may be noticed, at most, on top of the signal handler's own raise

_requested = threading.Event()


def request() -> None:
    _requested.set()


def clear() -> None:
    _requested.clear()


def requested() -> bool:
    return _requested.is_set()


def raise_if_requested() -> None:
    if _requested.is_set():
        raise KeyboardInterrupt("stop requested by a signal")


def wait_each(futures: Iterable[Any], poll_s: float = POLL_S) -> Iterable[Any]:
    """The Prefect futures, each yielded once it is done, in order; KeyboardInterrupt as soon as a
    stop was requested, though the future's task is still running."""
    from prefect.futures import wait

    for future in futures:
        while not wait([future], timeout=poll_s).done:
            raise_if_requested()
        yield future

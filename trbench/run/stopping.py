"""A stop asked for by a signal (Ctrl-C, SIGTERM), and a wait of the main thread that notices it.

The CLI's signal handler raises KeyboardInterrupt in the main thread and ignores any further signal,
so that stopping the servers is not cut short. That single raise is the only notice the flow gets: if
it is held off (the main thread parked in an untimed wait on a worker) or swallowed on its way, the
rest of the matrix runs before the flow stops. The handler therefore also sets this flag, and the main
thread waits on workers in short slices that check it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

POLL_S = 0.25  # how late a stop may be noticed, at most, on top of the signal handler's own raise
# how long an error waits for a stop that may be on its way: a signal to the process group reaches the
# children (the temporary Prefect server, the validation process) as it reaches this process, and a
# child's end can surface here as an error before this process has run its own handler
SETTLE_S = 0.5

# a plain flag, not a threading.Event: the signal handler sets it, and an Event's set() takes a lock
# that the interrupted code may be inside
_requested = [False]


# whether this process's own signal handler (the CLI's) is the one that sets the flag: then a flow run in this
# process keeps it set first, ahead of Prefect's handler (tasks/signals.py)
_owned = [False]


def own_signals() -> None:
    _owned[0] = True


def signals_owned() -> bool:
    return _owned[0]


def request() -> None:
    _requested[0] = True


def clear() -> None:
    _requested[0] = False


def requested() -> bool:
    return _requested[0]


def raise_if_requested() -> None:
    if _requested[0]:
        raise KeyboardInterrupt("stop requested by a signal")


def raise_if_requested_soon(settle_s: float = SETTLE_S) -> None:
    """KeyboardInterrupt if a stop is asked for within settle_s (sleeping in the main thread lets its
    handler run); returns after settle_s otherwise."""
    deadline = time.monotonic() + settle_s
    while True:
        raise_if_requested()
        if time.monotonic() >= deadline:
            return
        time.sleep(0.02)


def wait_each(futures: Iterable[Any], poll_s: float = POLL_S) -> Iterable[Any]:
    """The Prefect futures, each yielded once it is done, in order; KeyboardInterrupt as soon as a
    stop was requested, though the future's task is still running."""
    from prefect.futures import wait

    for future in futures:
        while not wait([future], timeout=poll_s).done:
            raise_if_requested()
        yield future

"""The event loop load mode runs on: uvloop where it is installed (Linux and macOS), asyncio's own elsewhere.

Measured with bench/harness.py's synthetic server (256 streams x 250 tok/s, one token per read): a
Protocol that only stamps its reads costs 15 µs of CPU per read on asyncio's selector loop and 5 µs on
uvloop, and the client that costs less stamps closer to the arrival (p99 0.6 ms late against 5.4 ms).
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop, or None (asyncio's default) where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the fastest loop there is: the same Ctrl-C handling (the main task is cancelled,
    then KeyboardInterrupt is raised) and the same clean-up of what is left; the collector paused."""
    with collector_paused(), asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


_pause_lock = threading.Lock()
_pauses = 0
_was_enabled = True


@contextmanager
def collector_paused() -> Iterator[None]:
    """The garbage collector waits while timed streams run: a full pass over a step's exchanges (thousands
    of lists of arrival times) stopped the loop for 30 ms in bench/harness.py, and every read of that
    moment was stamped 30 ms late. What exists before is frozen out of later passes; the step's own
    garbage is collected when the last timed loop of the process ends (threads may run steps at once)."""
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.collect()
            gc.freeze()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0:
                gc.unfreeze()
                if _was_enabled:
                    gc.enable()
                gc.collect()

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


def _is_interrupt(exc: object) -> bool:
    """KeyboardInterrupt, SystemExit, Prefect's TerminationSignal: what a signal handler raises to stop
    the process, as against an error (Exception) or a cancellation."""
    return isinstance(exc, BaseException) and not isinstance(exc, (Exception, asyncio.CancelledError, GeneratorExit))


class _Interrupts:
    """Keeps an interrupt the loop would swallow, and stops the run with it.

    A signal's Python handler runs wherever the main thread is, and under load that is mostly a
    protocol callback (data_received, the timed path). uvloop hands what a stream callback raises to
    the loop's exception handler and goes on, KeyboardInterrupt included; uvloop and asyncio both do
    so with any other BaseException raised in a callback, Prefect's TerminationSignal (SIGTERM during a
    flow run) among them. The stop was then lost: logged as "Fatal error on transport", and the CLI,
    whose handler ignores later signals, ran on to the end. Here the loop's exception handler keeps it
    and cancels the main task; run() raises it once the task has unwound (every request in flight
    cancelled, the client closed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.caught: BaseException | None = None
        self._main: asyncio.Task | None = None
        loop.set_exception_handler(self._handle)

    async def watch(self, coro: Coroutine[Any, Any, T]) -> T:
        self._main = asyncio.current_task()
        return await coro

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not _is_interrupt(exc):
            loop.default_exception_handler(context)
        elif self.caught is None:
            self.caught = exc
            if self._main is not None:
                self._main.cancel()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the fastest loop there is: the same Ctrl-C handling (the main task is cancelled,
    then KeyboardInterrupt is raised) and the same clean-up of what is left; an interrupt raised in a
    protocol callback stops the run too (_Interrupts); the collector paused."""
    with collector_paused(), asyncio.Runner(loop_factory=loop_factory()) as runner:
        interrupts = _Interrupts(runner.get_loop())
        try:
            result = runner.run(interrupts.watch(coro))
        except asyncio.CancelledError:
            if interrupts.caught is None:
                raise
    if interrupts.caught is not None:  # outside the except: raised as itself, not "during handling" of the cancel
        raise interrupts.caught
    return result


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

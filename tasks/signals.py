"""A SIGTERM to the CLI noticed while its flow runs in the CLI's own process.

For a flow run, Prefect swaps its own SIGTERM handler in: it raises TerminationSignal, and hands the signal
on to the handler before it (the CLI's, which sets trbench's stop flag) only once that exception has unwound
to Prefect's flow engine. Raised inside a lock's release, the exception surfaces as another one ("release
unlocked lock"), the hand-on never happens and the stop reads as a failure. So, where the CLI owns the
signals, the flag is set first, by a handler that then calls Prefect's. A flow run that a worker started is
left to Prefect's own handling (its cancellation works through it).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from trbench.run import stopping

_ours: set[Callable[..., Any]] = set()  # the handlers this module installed


def flag_stops_first() -> None:
    """Put a handler that sets the stop flag, then calls the current SIGTERM handler, in front of it."""
    if not stopping.signals_owned() or threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if not callable(current) or current in _ours:
        return

    def flag_then_hand_on(signum: int, frame: FrameType | None) -> None:
        stopping.request()
        current(signum, frame)

    _ours.add(flag_then_hand_on)
    signal.signal(signal.SIGTERM, flag_then_hand_on)

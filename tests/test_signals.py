"""tasks/signals.py: in the CLI's own process, a SIGTERM sets trbench's stop flag before Prefect's handler
(or whatever handler is in place) runs, so a stop whose exception is lost on its way is still the stop."""

from __future__ import annotations

import os
import signal

from tasks.signals import flag_stops_first
from trbench.run import stopping


def test_a_sigterm_sets_the_stop_flag_then_hands_on_to_the_handler_in_place(monkeypatch):
    seen: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    monkeypatch.setattr(stopping, "_owned", [True])
    monkeypatch.setattr(stopping, "_requested", [False])
    try:
        flag_stops_first()
        flag_stops_first()  # once only: a second call does not wrap its own handler
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopping.requested() and seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_flow_run_a_worker_started_keeps_prefects_handling(monkeypatch):
    def handler(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, handler)
    monkeypatch.setattr(stopping, "_owned", [False])
    try:
        flag_stops_first()
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, before)

"""A stop asked for by a signal reaches the flow's main-thread waits even when the handler's single
KeyboardInterrupt does not (held off or swallowed): trbench/run/stopping.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from prefect import task
from prefect.task_runners import ThreadPoolTaskRunner

from trbench.run import stopping


@task
def held(release: threading.Event, value: int) -> int:
    release.wait(20)
    return value


def test_wait_each_yields_each_future_in_order_once_done(prefect_api):
    release = threading.Event()
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        futures = [runner.submit(held, parameters={"release": release, "value": v}) for v in (1, 2)]
        threading.Timer(0.5, release.set).start()
        assert [f.result() for f in stopping.wait_each(futures)] == [1, 2]


def test_wait_each_raises_on_a_stop_while_the_task_still_runs(prefect_api):
    release = threading.Event()
    try:
        with ThreadPoolTaskRunner(max_workers=1) as runner:
            future = runner.submit(held, parameters={"release": release, "value": 1})
            threading.Timer(0.5, stopping.request).start()  # as if the handler's raise was swallowed
            t0 = time.monotonic()
            with pytest.raises(KeyboardInterrupt, match="stop requested"):
                for _ in stopping.wait_each([future]):
                    pass
            assert time.monotonic() - t0 < 0.5 + 10 * stopping.POLL_S
            assert not release.is_set() and not future.state.is_final()  # noticed, not waited out
    finally:
        release.set()


def test_cli_signal_handler_sets_the_flag_as_well_as_raising():
    from trbench.cli import _stop_on_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _stop_on_signals()
        assert not stopping.requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here, at the next bytecode
        assert stopping.requested()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # a second Ctrl-C does not cut the stop short
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_an_error_waits_briefly_for_a_stop_on_its_way():
    """A child stopped by the same signal can fail a call before this process runs its handler: the
    error is the stop when the stop is asked for within the settle time, and only then."""
    stopping.clear()
    try:
        started = time.monotonic()
        stopping.raise_if_requested_soon(0.3)  # no stop: returns once the settle time is over
        assert 0.3 <= time.monotonic() - started < 2.0
        threading.Timer(0.1, stopping.request).start()
        with pytest.raises(KeyboardInterrupt):
            stopping.raise_if_requested_soon(2.0)
    finally:
        stopping.clear()

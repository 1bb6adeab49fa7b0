"""What Prefect logs while a run stops or drains stays off the console (the log file keeps it)."""

from __future__ import annotations

import logging

from trbench.cli import _NoStopNoise


def record(name: str, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)


def test_the_drain_progress_and_stop_errors_are_dropped_and_other_warnings_kept():
    noise = _NoStopNoise()
    assert not noise.filter(record("EventsWorker", "Still processing items: 4 items remaining..."))
    assert not noise.filter(record("APILogWorker", "Still processing items: 12 items remaining..."))
    assert not noise.filter(record("prefect.flow_runs", "Execution was aborted by an interrupt signal."))
    assert noise.filter(record("prefect.flow_runs", "Finished in state Failed('1 of 3 runs failed')"))
    assert noise.filter(record("EventsWorker", "Service 'EventsWorker' failed with 4 pending items."))

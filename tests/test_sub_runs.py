"""When tr_fanout takes a sub-run's host for gone (tasks.sub_runs), on the worker records Prefect's API returns."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from prefect.client.schemas.objects import Worker, WorkerStatus

from tasks.sub_runs import SubRun, latest, worker_gone

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


class Workers:
    """Answers read_workers_for_work_pool as the API would, with the records given."""

    def __init__(self, *workers: Worker):
        self.workers = list(workers)

    def read_workers_for_work_pool(self, pool: str) -> list[Worker]:
        return self.workers


def worker(name: str, silent_s: float | None, status: WorkerStatus = WorkerStatus.ONLINE) -> Worker:
    beat = None if silent_s is None else NOW - timedelta(seconds=silent_s)
    return Worker(name=name, work_pool_id=uuid.uuid4(), last_heartbeat_time=beat, heartbeat_interval_seconds=2,
                  status=status)


def test_a_worker_is_gone_after_three_missed_heartbeats_or_when_prefect_shows_it_offline():
    assert worker_gone(Workers(worker("a", 5.9)), "pool", "a", NOW) is None  # type: ignore[arg-type]
    why, window = worker_gone(Workers(worker("a", 6.5)), "pool", "a", NOW)  # type: ignore[arg-type,misc]
    assert "worker a sent no heartbeat for 6 s (every 2 s expected)" == why and window == 6.0
    assert worker_gone(Workers(worker("a", 1, WorkerStatus.OFFLINE)), "pool", "a", NOW) is not None  # type: ignore[arg-type]
    assert worker_gone(Workers(worker("a", None)), "pool", "a", NOW) is None  # type: ignore[arg-type]  # starting
    gone = worker_gone(Workers(worker("b", 0)), "pool", "a", NOW)  # type: ignore[arg-type]
    assert gone is not None and gone[0] == "worker a is no longer in pool pool"


def test_latest_is_each_models_last_attempt_in_the_order_first_started():
    def sub(model: str, attempt: int) -> SubRun:
        return SubRun(model=model, attempt=attempt, parameters={}, flow_run_id=uuid.uuid4(), flow_run=f"{model}-{attempt}")

    history = [sub("x", 1), sub("y", 1), sub("x", 2), sub("x", 3)]
    assert [(s.model, s.attempt) for s in latest(history)] == [("x", 3), ("y", 1)]

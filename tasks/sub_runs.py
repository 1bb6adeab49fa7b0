"""The sub-runs of a fanned-out TR as Prefect sees them: which worker took each (the worker's own event),
whether that worker's host still lives (its heartbeats), and a sub-run started again when its host is gone.

A sub-run whose host died would stay Running for ever: its process and its servers died with the host, and
nothing is left to report a final state. It counts as gone when two things hold at once:
- its worker stopped heartbeating: no heartbeat for LOST_HEARTBEATS of the worker's own intervals (Prefect's own
  rule for marking a worker offline), or Prefect already shows the worker offline;
- and nothing was heard of the sub-run itself for as long, and for at least one and a half of a flow run's
  heartbeat intervals (no task run, state or heartbeat event about it), so a flow run whose worker alone was
  stopped, while it goes on, is left to finish.
It is then marked Crashed and started again on the same deployment with the same parameters: any live worker of
the pool takes it, and the TR's resume skips every run the lost host finished (the run files in the shared
output_dir are the ledger), so nothing is measured twice and a run cut off midway is measured again whole.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, cast
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, WorkerStatus
from prefect.deployments import run_deployment
from prefect.events.filters import (
    EventAnyResourceFilter, EventFilter, EventNameFilter, EventOccurredFilter, EventRelatedFilter)
from prefect.states import Cancelling, Crashed
from pydantic import BaseModel

from trbench.prose import count

SUBMITTED = "prefect.worker.submitted-flow-run"  # what a worker emits when it takes a flow run
LOST_HEARTBEATS = 3  # missed heartbeats that make a worker gone, as Prefect's own offline rule counts them
RESTARTABLE = {"Crashed"}  # a sub-run that ended so lost its process, not its measurements: it runs again


class SubRun(BaseModel):
    """One attempt at one model's share of the matrix: the flow run that ran it and how it ended."""

    model: str
    attempt: int
    parameters: dict[str, Any]
    flow_run_id: UUID
    flow_run: str
    worker: str | None = None
    state: str = "Scheduled"
    message: str = ""
    final: bool = False
    infrastructure_pid: str | None = None


def start(deployment: str, parameters: dict[str, Any], name: str, model: str, attempt: int) -> SubRun:
    """A flow run of the deployment that any worker of its pool may take; returns at once."""
    run = cast(FlowRun, run_deployment(deployment, parameters=parameters, timeout=0, tags=["trbench-fanout"],
                                       flow_run_name=name if attempt == 1 else f"{name}-attempt{attempt}"))
    return SubRun(model=model, attempt=attempt, parameters=parameters, flow_run_id=run.id, flow_run=run.name)


def worker_of(client: SyncPrefectClient, flow_run_id: UUID) -> str | None:
    """The worker that took a flow run, from the event it emitted when it did (None before it is recorded)."""
    page = client.read_events(EventFilter(
        event=EventNameFilter(name=[SUBMITTED]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"])), limit=5)
    for event in page.events:
        name = event.resource.get("prefect.resource.name")
        if name:
            return name
    return None


def worker_gone(client: SyncPrefectClient, pool: str, worker: str, now: datetime) -> tuple[str, float] | None:
    """Why a worker's host is taken for gone (one phrase) and the silence that takes (seconds), or None while
    it heartbeats."""
    found = [w for w in client.read_workers_for_work_pool(pool) if w.name == worker]
    if not found:
        return f"worker {worker} is no longer in pool {pool}", float(LOST_HEARTBEATS * 30)
    w = found[0]
    interval = w.heartbeat_interval_seconds or 30
    if w.last_heartbeat_time is None:
        return None  # never heartbeated yet: it is starting
    silent = (now - w.last_heartbeat_time).total_seconds()
    if w.status == WorkerStatus.OFFLINE or silent > LOST_HEARTBEATS * interval:
        return f"worker {worker} sent no heartbeat for {silent:.0f} s (every {interval} s expected)", \
            float(LOST_HEARTBEATS * interval)
    return None


def quiet(client: SyncPrefectClient, flow_run_id: UUID, since: datetime) -> bool:
    """Whether no event about the flow run (its own, or a task run's of it) occurred since then."""
    page = client.read_events(EventFilter(
        occurred=EventOccurredFilter(since=since, until=datetime.now(timezone.utc)),
        any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"])), limit=1)
    return not page.events


def lost(client: SyncPrefectClient, sub: SubRun, run: FlowRun) -> str | None:
    """Why a sub-run that is not final has lost its host (one phrase), or None."""
    if sub.worker is None or run.work_pool_name is None:
        return None  # not taken yet: it waits for a worker, as long as the fan-out waits
    now = datetime.now(timezone.utc)
    gone = worker_gone(client, run.work_pool_name, sub.worker, now)
    if gone is None:
        return None
    why, window = gone
    return why if quiet(client, sub.flow_run_id, now - timedelta(seconds=max(window, heard_within()))) else None


def heard_within() -> float:
    """How long a live flow run may go without any event: one and a half of its heartbeat intervals (a run's
    process heartbeats every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds, taken to be the same on every host);
    0 when heartbeats are off."""
    from prefect.settings import get_current_settings

    frequency = get_current_settings().flows.heartbeat_frequency
    return 1.5 * frequency if frequency else 0.0


def refresh(client: SyncPrefectClient, sub: SubRun) -> FlowRun:
    """The sub-run's state, worker and infrastructure as the API has them now."""
    run = client.read_flow_run(sub.flow_run_id)
    if run.state is not None:
        sub.state, sub.final = run.state.name or run.state.type.value, run.state.is_final()
        sub.message = run.state.message or ""
    sub.worker = sub.worker or worker_of(client, sub.flow_run_id)
    sub.infrastructure_pid = run.infrastructure_pid
    return run


def watch(subs: list[SubRun], deployment: str, timeout_s: float, poll_s: float = 5.0,
          max_attempts: int = 3, log: Any = None) -> list[SubRun]:
    """Wait until each model's latest attempt is final; an attempt whose host is gone, or that crashed, is
    started again (up to max_attempts per model). Every attempt is returned, in the order started. On a timeout
    or an interrupt the unfinished ones are cancelled."""
    deadline = time.monotonic() + timeout_s
    history = list(subs)
    with get_client(sync_client=True) as client:
        try:
            while True:
                pending = [s for s in latest(history) if not s.final]
                for sub in pending:
                    run = refresh(client, sub)
                    why = None if sub.final else lost(client, sub, run)
                    if why is not None:
                        sub.state, sub.message, sub.final = "Crashed", f"{why}: its host is taken for gone", True
                        client.set_flow_run_state(sub.flow_run_id, Crashed(message=sub.message), force=True)
                    if sub.final and sub.state in RESTARTABLE and sub.attempt < max_attempts:
                        again = start(deployment, sub.parameters, _base_name(sub), sub.model, sub.attempt + 1)
                        history.append(again)
                        if log is not None:
                            log.warning("sub-run %s (%s) ended %s: %s; started again as %s", sub.flow_run, sub.model,
                                        sub.state, sub.message, again.flow_run)
                if all(s.final for s in latest(history)):
                    return history
                if time.monotonic() > deadline:
                    unfinished = sum(not s.final for s in latest(history))
                    raise TimeoutError(f"{count(unfinished, 'sub-run')} unfinished after {timeout_s:.0f} s")
                time.sleep(poll_s)
        except BaseException:
            for sub in history:
                if not sub.final:
                    client.set_flow_run_state(sub.flow_run_id, Cancelling(message="tr_fanout stopped"), force=True)
            raise


def latest(history: list[SubRun]) -> list[SubRun]:
    """Each model's last attempt, in the order the models were first started."""
    last: dict[str, SubRun] = {}
    for sub in history:
        last[sub.model] = sub
    return list(last.values())


def _base_name(sub: SubRun) -> str:
    return sub.flow_run.rsplit("-attempt", 1)[0] if sub.attempt > 1 else sub.flow_run

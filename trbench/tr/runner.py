"""One TR run, from its spec to its outcome, the same whoever starts it: the TR flow (flows/tr.py,
each step a Prefect task run) or the command line without a Prefect API (each step a plain call).

  1. open the session: the servers made, their ports free or the servers answering
  2. start the servers once, check every model, model facts, VRAM budget, manifest
  3. every registered workload the spec names, planned, then measured (trbench.workloads)
  4. close the session: the servers stopped, whatever happened
  5. the closing step: failure log, outlier flags, suite results, report, validation, the outcome
"""

from __future__ import annotations

from contextlib import nullcontext

from trbench.config.agents import AgentSuite
from trbench.config.prompts import PromptSuite
from trbench.config.spec import MatrixSpec
from trbench.run import progress, stopping
from trbench.run.preflight import PreflightError
from trbench.run.single import RunCancelled
from trbench.tr.closing import closing_step
from trbench.tr.opening import check_instance, output_dir, start_servers
from trbench.tr.outcome import Outcome
from trbench.validation.worker import ValidationProcess
from trbench.workloads import Measured, active
from trbench.workloads.session import Selection, TRSession, open_session
from trbench.workloads.steps import Steps

# what a step raises when the run was cancelled from outside (Prefect's CancelledRun, where the flow
# runs under Prefect): added by the caller that knows it
STOP_ERRORS: tuple[type[BaseException], ...] = (RunCancelled, PreflightError)


def track_progress(session: TRSession) -> object:
    """A progress bar beside the run: what is planned (the matrix, then the load steps and a sweep's
    rates) adds to the total; a run a resumed TR had finished counts as done."""
    update = session.steps.progress_artifact(f"{session.spec.tr_id}-progress",
                                             f"{session.spec.tr_id}: runs and steps finished of those planned")
    state = {"done": 0, "total": 0}

    def on_event(event: progress.ProgressEvent) -> None:
        if event.kind == "planned":
            state["total"] += event.total_runs or 0
        elif event.kind in ("run_finished", "run_skipped"):
            state["done"] += 1
        else:
            return
        update(0.0 if not state["total"] else min(100.0, round(state["done"] / state["total"] * 100.0, 1)), None)

    return progress.subscribe(on_event)


def measure_workloads(session: TRSession, measured: Measured, stop_errors: tuple[type[BaseException], ...]) -> None:
    """Every workload the spec names, in the registry's order: all planned first (the runs planned
    up front announced as one count), then each measured. A workload that stops early leaves what it
    measured kept and the next workloads measured; the first such failure is raised at the end."""
    workloads = active(session.spec, session.selection.rerun)
    plans = [(w, w.plan(session)) for w in workloads]
    runs, skipped = sum(p.runs for _, p in plans), sum(p.skipped for _, p in plans)
    measured.skipped = skipped
    if runs or skipped:
        progress.emit(kind="planned", total_runs=runs + skipped, message=f"{skipped} already finished")
        for _ in range(skipped):
            progress.emit(kind="run_skipped")
    errors = []
    for workload, planned in plans:
        try:
            workload.execute(session, planned, measured)
        except stop_errors:
            raise
        except Exception as err:  # noqa: BLE001 - the next workloads still run; the outcome names the first
            # a stop can surface as another exception (the signal's raise landing inside a lock's release
            # reads "release unlocked lock", or a child stopped by the same signal fails a call first):
            # once a stop was asked for, it is the stop
            stopping.raise_if_requested_soon()
            session.steps.log.error("%s stopped early: %s: %s", workload.name, type(err).__name__, err)
            errors.append(err)
    if errors:
        raise errors[0]


def close_servers(session: TRSession) -> None:
    """Stop every server (a failure recorded), then once more plainly: also when an interrupt hit
    the step machinery itself."""
    session.gate.close()  # before the servers go: a run cut short by this is not written
    try:
        session.steps.call("stop-instances", "stop-instances", session.close)
    finally:
        session.close()


def run_tr(spec: MatrixSpec, prompts: PromptSuite, agents: AgentSuite | None, steps: Steps,
           selection: Selection | None = None, stop_errors: tuple[type[BaseException], ...] = STOP_ERRORS,
           server_logs: str | None = None) -> Outcome:
    """A TR run: every unfinished run and step (or, with a rerun's selection, the flagged configs as a
    new attempt: runs only, no suites or load).

    Nothing a server does ends it early without the closing step: whatever stops the measuring
    (but an interrupt or a cancel, or a preflight error before anything is measured), the failure
    log, outlier flags, report and validation are written for what was measured, and the outcome
    says what stopped it."""
    session = open_session(spec, prompts, agents, output_dir(spec), steps, selection, server_logs)
    for inst in session.instances:
        check_instance(session, inst)
    # validated at the end: its Great Expectations import starts now, beside the measuring
    matrix = spec.single_agent or spec.multi_agent is not None
    with ValidationProcess.claim() if matrix else nullcontext() as checker:
        measured = Measured()
        untrack = None
        stopped: Exception | None = None
        try:
            start_servers(session)
            untrack = track_progress(session)
            measure_workloads(session, measured, stop_errors)
        except stop_errors:
            raise  # an interrupt or a cancel, or bad input found before anything was measured: no checks
        except Exception as err:  # noqa: BLE001 - what was measured is still checked and reported below
            stopping.raise_if_requested_soon()  # a stop that surfaced as another exception is the stop
            stopped = err
            steps.log.error("the measuring stopped early: %s: %s", type(err).__name__, err)
        finally:
            if callable(untrack):
                untrack()
            close_servers(session)
        if checker is not None:
            checker.unthrottle()
        return closing_step(session, measured, stopped, checker)

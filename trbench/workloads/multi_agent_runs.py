"""The multi-agent matrix: per model x scenario, collector and insight on two instances at once,
then each alone, one run at a time; each run written as soon as it is measured."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trbench.backends import make_client
from trbench.config.agents import ROLES
from trbench.config.spec import Cell, MatrixSpec, OptionSet
from trbench.data import store
from trbench.data.rows import NotRun
from trbench.engines import Instance
from trbench.measure import energy
from trbench.run import progress, stopping
from trbench.run.multi import MultiRunPlan, execute_multi_run, failed_multi_run
from trbench.run.multi_external import runner_phase
from trbench.run.plan import plan_multi_runs
from trbench.workloads.protocol import Measured, Planned, ReportPart
from trbench.workloads.run_outcomes import RunOutcome

if TYPE_CHECKING:
    from trbench.workloads.session import TRSession


def cell_for(model: str, opts: OptionSet) -> Cell | None:
    """The server configuration an instance must load, when every setting is given."""
    if None in (opts.num_gpu, opts.num_ctx):
        return None  # an Ollama server takes its defaults (or the options) per request
    return Cell(model=model, num_gpu=opts.num_gpu, num_ctx=opts.num_ctx, temperature=opts.temperature or 0.0)


def outcome(row: dict[str, Any]) -> RunOutcome:
    """What the final state counts of a multi-agent run row."""
    return RunOutcome.of_multi_run(row)


def _record_failed(session: TRSession, plan: MultiRunPlan, reason: str, not_run: NotRun | None = None
                   ) -> RunOutcome:
    """A run that could not start keeps its row with the error; one not run at all (not_run: why, as a
    code) with the reason ("not run: ...")."""
    row = failed_multi_run(session.spec, plan, reason, session.digest)
    if not_run:
        row.update(invalid_reason=f"{store.NOT_RUN}{reason}", not_run=not_run, error_kinds=[])
    row.update(energy.no_telemetry("no telemetry: the run did not start"))
    store.write_run(session.root, row, [], session.manifest, kind="multi")
    progress.emit(kind="run_finished", run_id=plan.run_id, valid=False)
    return outcome(row)


def measure_run(session: TRSession, plan: MultiRunPlan, pair: dict[str, Instance], first_of_config: bool) -> RunOutcome:
    """Collector and insight at once, then alone, on the instances by role; the run's Parquet files are
    written before returning. An instance marked unusable leaves the run recorded as not run, with the reason."""
    s = session
    spec, suite = s.spec, s.agents
    assert suite is not None and spec.multi_agent is not None  # a multi-agent section always loads its agents
    s.gate.check()
    progress.emit(kind="run_started", run_id=plan.run_id)
    down = [f"{i.name} {store.SERVER_DOWN}: {why}" for i in pair.values() if (why := s.faults.down(i.name))]
    if down:
        return _record_failed(s, plan, "; ".join(down), not_run="server_down")
    reloaded = False
    try:
        for slot in plan.slots:
            cell = cell_for(plan.model, slot.options)
            if cell is not None:
                reloaded |= pair[slot.role].prepare(cell) is not None
    except Exception as err:  # noqa: BLE001 - whatever the server did, the run is recorded and the matrix goes on
        return _record_failed(s, plan, str(err))
    clients = {role: make_client(spec.backend, inst.url, spec.timeout_s, spec.stall_timeout_s, plan.harness,
                                 inst.api_key_env)
               for role, inst in pair.items()}
    sampler = energy.sampler_for(spec.telemetry, list(pair.values()), spec.shared_lanes)  # GPU and host telemetry beside the run
    try:
        warmups = spec.multi_agent.warmup_rounds if (reloaded or first_of_config) else 0
        with sampler or contextlib.nullcontext():
            result = execute_multi_run(spec, plan, suite, clients, warmups, s.digest,
                                       on_phase=sampler.mark if sampler else None, phase_runner=runner_phase)
    finally:
        for c in clients.values():
            c.close()
    s.gate.check()  # the servers may have been stopped under this run
    tokens = sum(r["output_tokens"] or 0 for r in result.request_rows if r["phase"] != "warmup" and r["status"] == "ok")
    telemetry_rows = energy.finish(sampler, result.run_row, tokens, spec.telemetry)
    store.write_run(s.root, result.run_row, result.request_rows, s.manifest, kind="multi", telemetry_rows=telemetry_rows)
    progress.emit(kind="run_finished", **progress.multi_run_figures(result.run_row))
    return outcome(result.run_row)


class MultiAgent:
    """Two agents at once on two instances (spec `multi_agent`)."""

    name: ClassVar[str] = "multi"
    tables: ClassVar[tuple[str, ...]] = ("ma_runs", "ma_requests")

    def wanted(self, spec: MatrixSpec, rerun: bool) -> bool:
        return spec.multi_agent is not None

    def plan(self, session: TRSession) -> Planned:
        s = session
        every = plan_multi_runs(s.spec, s.agents, s.instances, s.facts)
        todo = s.selection.multi(every, s.root)
        return Planned(units=todo, runs=len(todo), skipped=0 if s.selection.rerun else len(every) - len(todo))

    def execute(self, session: TRSession, planned: Planned, measured: Measured) -> None:
        s = session
        pair = dict(zip(ROLES, s.instances))
        todo: list[MultiRunPlan] = planned.units
        for i, plan in enumerate(todo):
            stopping.raise_if_requested()
            first = i == 0 or (plan.model, plan.scenario) != (todo[i - 1].model, todo[i - 1].scenario)
            measured.runs.append(s.steps.call("multi-agent-run", f"multi-agent {plan.run_id}", measure_run, s, plan,
                                              pair, first))

    def report_section(self, root: Path) -> ReportPart | None:
        return None  # the report's Multi-agent results section
